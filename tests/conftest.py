"""Shared test setup: markers by folder, no sockets in unit tests, and the running local cloud."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import control, endpoints
from localcloud.settings import Settings

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is marked after its folder, so `-m unit` / `-m "not integration"` just work."""
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


class SocketUsedInUnitTest(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_sockets_in_unit_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Unit tests must not touch the network: any new socket fails the test."""
    if request.node.get_closest_marker("unit") is not None:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise SocketUsedInUnitTest(
                "unit tests must not open sockets: use a fake, or move it to tests/integration"
            )

        monkeypatch.setattr(socket, "socket", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
    yield


# --- the running local cloud, for integration and e2e tests -----------------------------------
# ``local_cloud`` is the parsed ``endpoints.json``. If the local cloud (as configured by the
# LOCALCLOUD_* variables) is already up and healthy it is used as is and left running; otherwise
# the fixture starts it and stops it at the end of the session.


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


@pytest.fixture(scope="session")
def database_conninfo(local_cloud: dict[str, Any]) -> str:
    """The app database's conninfo, with the credentials from the local cloud's RDS secret."""
    from deployment import database

    return database.conninfo(local_cloud)
