"""A burst through the burst package, in-process, against a private stage: several hundred
tasks, each accepted task exactly one row, all done, the report and the chart written."""

from __future__ import annotations

import json
from pathlib import Path

from burst.run import run_burst
from burst.settings import BurstSettings
from tests.e2e.conftest import Stage

TASKS = 400


def test_a_burst_of_echo_tasks_ends_as_one_done_row_each(stage: Stage, tmp_path: Path) -> None:
    settings = BurstSettings(
        profile="steady",
        count=TASKS,
        rate=200,
        duration=2,
        task_type="echo",
        batch=20,
        threads=8,
        max_seconds=60,
        drain_seconds=120,
        out_dir=tmp_path,
        progress=False,
    )

    result = run_burst(stage.target(), settings)

    report = result.report
    integrity = report["integrity"]
    assert (integrity["lost"], integrity["duplicated"], integrity["unexpected"]) == ([], [], [])
    assert integrity["ok"] and integrity["accepted"] == integrity["rows"] == TASKS
    assert report["tasks"]["accepted"] == TASKS
    assert (report["done"], report["failed"], report["drain"]["drained"]) == (TASKS, 0, True)
    assert report["batches"]["peak_concurrent"] >= 1
    assert sum(e["arrivals"] for e in report["timeline"]) == TASKS
    assert sum(e["completions"] for e in report["timeline"]) == TASKS
    assert json.loads(result.json_path.read_text())["run_id"] == report["run_id"]
    assert result.chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
