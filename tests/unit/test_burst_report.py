"""The burst's report from hand-made observations: the JSON's shape and figures, the summary,
the chart (a real PNG), and the messages when nothing is deployed."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from burst import cloud
from burst.analysis import TaskRow
from burst.chart import write_chart
from burst.cloud import Target
from burst.errors import BurstError
from burst.progress import ProgressBar
from burst.report import Observations, accepted_tasks, build_report, summary_lines, write_json
from burst.schedule import PlannedRequest
from burst.sender import Answer, SendLog, Sent
from burst.settings import BurstSettings
from scaling_model.costs import FunctionShape

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
TARGET = {
    "api_url": "http://127.0.0.1:4566/_aws/execute-api/x/api/",
    "task_queue_url": "http://127.0.0.1:4566/queue/tasks",
    "dead_letter_queue_url": "http://127.0.0.1:4566/queue/tasks-dlq",
    "worker_function": "serverless-scaling-local-worker",
    "event_source_mapping": "uuid-1",
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def observations() -> Observations:
    """Four tasks in two batch requests and one single that failed in transport: three
    accepted, run by two overlapping worker batches; one 503."""
    task = {"type": "echo"}
    planned = [
        PlannedRequest(0, 0.0, 0, (task, task)),
        PlannedRequest(1, 0.5, 2, (task,)),
        PlannedRequest(2, 1.0, 3, (task,)),
        PlannedRequest(3, 1.5, 4, (task,)),
    ]
    log = SendLog(started=10.0)
    log.sent = [
        Sent(
            planned[0],
            0.0,
            0.1,
            Answer(202, ("accepted", "accepted"), ("a", "b"), retried=("502", "503")),
        ),
        Sent(planned[1], 0.6, 0.7, Answer(202, ("accepted",), ("c",))),
        Sent(planned[2], 1.0, 1.2, Answer(503)),
        Sent(planned[3], 1.5, 31.5, Answer(None, error="ReadTimeout")),
    ]
    rows = [
        TaskRow("a", "done", "burst-R-0", at(0.05), at(1.0), at(1.4), "w1"),
        TaskRow("b", "done", "burst-R-1", at(0.05), at(1.4), at(2.2), "w1"),
        TaskRow("c", "failed", "burst-R-2", at(0.65), at(1.8), at(2.5), "w2", 5),
    ]
    return Observations(
        run_id="R",
        settings=BurstSettings(count=5, batch=2),
        target=TARGET,
        key_prefix="burst-R-",
        planned=planned,
        log=log,
        origin=T0,
        origin_clock=10.0,
        accepted=accepted_tasks(log.sent),
        rows=rows,
        drain_statuses={"done": 2, "failed": 1},
        drained=True,
        drain_waited_seconds=2.0,
        queue_samples=[(10.0, 0, 0), (11.0, 1, 2), (12.0, 0, 1)],
        queue_at_start=(0, 0),
        dead_letters=1,
        max_concurrency=10,
        cloudwatch={"esm_concurrent_batches": [(at(1.9), 2.0)]},
    )


def test_the_report_holds_every_figure() -> None:
    report = build_report(observations())

    assert set(report) >= {
        "run_id", "settings", "target", "sending", "requests_by_status", "tasks",
        "api_latency_ms", "end_to_end_ms", "drain", "done", "failed", "batches",
        "dead_letter_messages", "integrity", "timeline", "optional_series",
    }  # fmt: skip
    assert report["requests_by_status"] == {"202": 2, "503": 1, "transport error": 1}
    assert report["tasks"] == {
        "accepted": 3,
        "rejected_by_status": {"503": 1},
        "transport_errors": {"ReadTimeout": 1},
    }
    assert report["api_latency_ms"]["n"] == 2  # 2xx answers only
    assert report["end_to_end_ms"]["p50"] == pytest.approx(1350.0)  # a: 1.35 s, b: 2.15 s
    assert report["drain"] == {
        "drained": True,
        "waited_seconds": 2.0,
        "seconds": 2.5,
        "last_final_seconds": 2.5,
        "statuses": {"done": 2, "failed": 1},
        "pending": 0,
    }
    assert (report["done"], report["failed"], report["dead_letter_messages"]) == (2, 1, 1)
    assert report["batches"] == {
        "count": 2,
        "peak_concurrent": 2,
        "peak_at_seconds": 1.8,
        "max_concurrency": 10,
    }
    assert report["integrity"]["ok"] is True
    assert report["sending"]["sent_tasks"] == 5 and report["sending"]["planned_tasks"] == 5
    assert report["sending"]["lateness_s"]["max"] == pytest.approx(0.1)
    assert report["sending"]["retries"] == {
        "requests_retried": 1,
        "extra_attempts": 2,
        "earlier_answers": {"502": 1, "503": 1},
        "still_failing": 2,  # the 503 and the transport error, never retried here
        "still_failing_attempts": [1],
    }
    assert [e["arrivals"] for e in report["timeline"]] == [3, 2, 0]
    assert [e["concurrent_batches"] for e in report["timeline"]] == [0, 2, 2]
    assert [e.get("esm_concurrent_batches") for e in report["timeline"]] == [None, 2.0, None]
    assert report["optional_series"] == ["esm_concurrent_batches"]


def test_the_report_is_json_and_the_summary_names_each_figure(tmp_path: Path) -> None:
    report = build_report(observations())

    path = write_json(report, tmp_path / "reports" / "burst-R.json")
    lines = summary_lines(json.loads(path.read_text()))

    text = "\n".join(lines)
    for label in ("sent", "pace", "accepted", "API ms", "end-to-end ms", "drain", "batches"):
        assert f"  {label} " in text
    assert "integrity      OK" in text
    assert "esm_concurrent_batches 2 at 1.9 s" in text
    assert (
        "most at once (task spans in the rows): 2 of MaximumConcurrency 10, reached 1.8 s" in text
    )


def test_a_lost_task_fails_the_integrity_check_in_the_report() -> None:
    seen = observations()
    seen.rows = seen.rows[:2]  # the row of c never appeared

    report = build_report(seen)

    assert report["integrity"]["ok"] is False
    assert report["integrity"]["lost"] == ["c"]
    assert "integrity      FAILED" in "\n".join(summary_lines(report))


def test_the_report_carries_the_runs_cost_on_aws_when_the_functions_were_read() -> None:
    seen = observations()
    assert build_report(seen)["cost"] is None  # functions unknown: no cost, nothing invented

    seen.worker_shape = seen.api_shape = FunctionShape(memory_mb=256, snapstart=True)
    cost = build_report(seen)["cost"]

    assert cost["total_usd"] > 0
    names = {item["name"] for item in cost["items"]}
    assert {"Lambda requests (worker)", "SQS requests (64 KB chunks)", "RDS Proxy"} <= names


class FakeLambda:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_functions_shape_is_read_and_a_failed_read_is_no_cost() -> None:
    answer = {"MemorySize": 256, "SnapStart": {"ApplyOn": "PublishedVersions"}}
    assert cloud.function_shape(FakeLambda(answer), "w") == FunctionShape(256, snapstart=True)
    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetFunction")
    assert cloud.function_shape(FakeLambda(error), "w") is None
    assert cloud.function_shape(FakeLambda(answer), None) is None


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = write_chart(build_report(observations()), tmp_path / "charts" / "burst-R.png")

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_without_the_app_deployed_the_burst_names_the_commands_that_deploy_it() -> None:
    running = {"localstack": {"url": "http://127.0.0.1:4566"}, "postgres": {}}

    with pytest.raises(BurstError, match=r"scripts/demo, or scripts/localcloud up && scripts/dep"):
        Target.from_endpoints(running, "endpoints.json")
    with pytest.raises(BurstError, match="local cloud is not up"):
        Target.from_endpoints({}, "endpoints.json")


# --- the adapters, with fakes


class FakeCloudWatch:
    def __init__(self, pages: list[dict[str, Any]] | Exception) -> None:
        self.pages = pages

    def get_paginator(self, name: str) -> FakeCloudWatch:
        assert name == "get_metric_data"
        return self

    def paginate(self, **query: Any) -> list[dict[str, Any]]:
        if isinstance(self.pages, Exception):
            raise self.pages
        assert {q["MetricStat"]["Period"] for q in query["MetricDataQueries"]} == {1}
        return self.pages


def test_cloudwatch_series_without_datapoints_are_left_out() -> None:
    page = {
        "MetricDataResults": [
            {"Id": "m0", "Timestamps": [at(1), at(2)], "Values": [3.0, 4.0]},
            {"Id": "m1", "Timestamps": [], "Values": []},
        ]
    }
    target = Target(running={}, **TARGET)

    series = cloud.cloudwatch_series(FakeCloudWatch([page]), target, at(0), at(5))

    assert series == {"lambda_concurrent_executions": [(at(1), 3.0), (at(2), 4.0)]}


def test_cloudwatch_not_answering_is_no_error() -> None:
    error = ClientError({"Error": {"Code": "InternalFailure"}}, "GetMetricData")
    target = Target(running={}, **TARGET)

    assert cloud.cloudwatch_series(FakeCloudWatch(error), target, at(0), at(5)) == {}


class FakeClock:
    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += seconds


class FakeConnection:
    """Answers the drain's status query with the next of `answers`."""

    def __init__(self, answers: list[list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.polls = 0

    def execute(self, query: str, params: Any) -> FakeConnection:
        self.polls += 1
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        return self.answers[min(self.polls, len(self.answers)) - 1]


def test_the_drain_wait_ends_when_every_task_is_final() -> None:
    connection = FakeConnection(
        [[{"status": "queued", "n": 2}], [{"status": "done", "n": 1}, {"status": "failed", "n": 1}]]
    )
    clock = FakeClock()

    counts, drained = cloud.wait_for_drain(connection, ["a", "b"], 60, clock)  # type: ignore[arg-type]

    assert (counts, drained, connection.polls, clock.time) == (
        {"done": 1, "failed": 1},
        True,
        2,
        1.0,
    )


def test_the_drain_wait_is_bounded() -> None:
    connection = FakeConnection([[{"status": "running", "n": 2}]])
    clock = FakeClock()

    counts, drained = cloud.wait_for_drain(connection, ["a", "b"], 3.5, clock)  # type: ignore[arg-type]

    assert (counts, drained) == ({"running": 2}, False)
    assert clock.time == pytest.approx(3.5)


def test_the_progress_bar_draws_a_line_per_update_in_a_log() -> None:
    stream = io.StringIO()
    bar = ProgressBar("sending", 10, stream=stream)

    bar.update(5, "tasks", force=True)
    bar.finish(10, "sent")

    assert stream.getvalue().splitlines() == [
        "sending  [###############...............] 5/10 tasks",
        "sending  [##############################] 10/10 sent",
    ]
