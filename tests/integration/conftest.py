"""The running local cloud, for integration tests.

``local_cloud`` is the parsed ``endpoints.json``. If the local cloud (as configured by the
LOCALCLOUD_* variables) is already up and healthy it is used as is and left running; otherwise
the fixture starts it and stops it at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localcloud import control, endpoints
from localcloud.settings import Settings


@pytest.fixture(scope="session")
def localcloud_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def local_cloud(localcloud_settings: Settings) -> Iterator[dict[str, Any]]:
    cfg = localcloud_settings
    if control.status(cfg).ok and cfg.endpoints_file.exists():
        yield endpoints.load(cfg.endpoints_file)
        return
    if not cfg.localstack_python.exists():
        pytest.fail(f"{cfg.localstack_python} missing: run scripts/setup first")
    try:
        result = control.up(cfg)
    except control.UpError as e:
        pytest.fail(f"could not start the local cloud: {e}")
    try:
        yield result.endpoints
    finally:
        outcome = control.down(cfg)
        assert not outcome.problems, outcome.problems
