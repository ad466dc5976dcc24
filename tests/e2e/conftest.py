"""The app deployed to the local cloud under a stage of its own (tests/stages.py: `Stage` and
`deployed_stage` live there, shared with the fault suite). The stage uses short timeouts so
retries reach the dead-letter queue within seconds; the defaults (in .chalice/config.json) stay
AWS's advice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localcloud.settings import Settings
from tests.stages import Stage, deployed_stage

__all__ = ["Stage", "deployed_stage"]  # the e2e tests import them from here

WORKER_TIMEOUT_SECONDS = 3
VISIBILITY_TIMEOUT_SECONDS = 3  # the floor: the worker's timeout


@pytest.fixture(scope="session")
def stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path_factory.mktemp("app"),
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
    ) as deployed:
        yield deployed
