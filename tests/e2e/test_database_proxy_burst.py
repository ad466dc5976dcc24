"""A burst at MaximumConcurrency 100 through the database proxy (RDS Proxy's stand-in): every
accepted task ends as exactly one done row, and PostgreSQL never holds more than the proxy's
100 server connections, however many environments run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from burst.run import run_burst
from burst.settings import BurstSettings
from localcloud.settings import PG_MAX_CONNECTIONS, PROXY_MAX_SERVER_CONNECTIONS, Settings
from tests.e2e.conftest import Stage, deployed_stage

MAXIMUM_CONCURRENCY = 100
TASKS = 3000
WORKER_TIMEOUT_SECONDS = 30
VISIBILITY_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="module")
def wide_stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path_factory.mktemp("wide"),
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
        environment={"WORKER_MAX_CONCURRENCY": str(MAXIMUM_CONCURRENCY)},
        name_prefix="proxy",
    ) as deployed:
        yield deployed


class ServerConnections:
    """Samples PostgreSQL's client connections (pg_stat_activity) until stopped; keeps the peak."""

    def __init__(self, conninfo: str) -> None:
        self.peak = 0
        self._conninfo = conninfo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerConnections:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            while not self._stop.wait(0.2):
                row = connection.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
                assert row is not None
                self.peak = max(self.peak, int(row[0]))


def test_a_burst_at_maximum_concurrency_100_through_the_proxy_loses_nothing(
    wide_stage: Stage, database_conninfo: str, tmp_path: Path
) -> None:
    settings = BurstSettings(
        profile="spike",
        count=TASKS,
        task_type="sleep",
        payload_options={"sleep_ms": 500},
        batch=100,
        # Four requests at a time: a backlog builds at once all the same, and the API answers
        # within the client's timeout while 100 batches run (and, in CI, the fault suite).
        threads=4,
        max_seconds=120,
        drain_seconds=300,
        out_dir=tmp_path,
        progress=False,
    )

    with ServerConnections(database_conninfo) as connections:
        result = run_burst(wide_stage.target(), settings)

    report = result.report
    integrity = report["integrity"]
    print(
        f"peak batches at once {report['batches']['peak_concurrent']}, "
        f"peak connections in PostgreSQL {connections.peak} (all of them, the proxy's included)"
    )
    assert (integrity["lost"], integrity["duplicated"], integrity["unexpected"]) == ([], [], [])
    assert integrity["ok"] and integrity["accepted"] == integrity["rows"] == TASKS
    assert (report["done"], report["failed"]) == (TASKS, 0)
    assert report["batches"]["peak_concurrent"] > 10  # well past the old maximum
    # the proxy's pool, plus this test's and the owner's connections, never the environments'
    assert connections.peak <= PROXY_MAX_SERVER_CONNECTIONS + 10 < PG_MAX_CONNECTIONS
