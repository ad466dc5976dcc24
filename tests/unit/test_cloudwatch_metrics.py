"""The CloudWatch metrics adapter against moto's CloudWatch (in process, no network): what it
publishes, how few PutMetricData calls that takes, when it publishes, and that a failure to
publish never reaches the caller."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from botocore.exceptions import EndpointConnectionError

from chalicelib.cloudwatch_metrics import RETRY_AFTER_S, CloudWatchMetrics, start_daemon_timer
from chalicelib.model import TaskRequest
from chalicelib.service import TaskService
from chalicelib.task_types import TaskRunner
from chalicelib.wiring import Dependencies
from tests.fakes import InMemoryTaskQueue, InMemoryTaskStore
from tests.unit.test_app_settings import SETTINGS
from tests.unit.test_worker import FakeContext, accept_tasks_of, event, new_worker

NAMESPACE = "ServerlessScaling"
DIMENSION_VALUES = {"service": "serverless-scaling", "stage": "local"}
DIMENSIONS = [{"Name": name, "Value": value} for name, value in DIMENSION_VALUES.items()]
# A whole second ten minutes ago: well inside what CloudWatch accepts (two weeks back).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def statistics(cloudwatch: Any, name: str, start: datetime = T0, seconds: int = 60) -> Any:
    """One datapoint summing every sample of `name` in [start - 1 min, start + seconds]."""
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=DIMENSIONS,
        StartTime=start - timedelta(minutes=1),
        EndTime=start + timedelta(seconds=seconds),
        Period=60,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )
    points = answer["Datapoints"]
    return {
        "SampleCount": sum(p["SampleCount"] for p in points),
        "Sum": sum(p["Sum"] for p in points),
        "Minimum": min((p["Minimum"] for p in points), default=None),
        "Maximum": max((p["Maximum"] for p in points), default=None),
        "Unit": {p["Unit"] for p in points},
    }


def datums(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [datum for call in calls for datum in call["MetricData"]]


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeScheduler:
    """Keeps the timers instead of starting threads; a test fires them."""

    timers: list[tuple[float, Any]] = field(default_factory=list)

    def __call__(self, delay_s: float, action: Any) -> None:
        self.timers.append((delay_s, action))

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for _, action in timers:
            action()


def sink(cloudwatch: Any, **options: Any) -> CloudWatchMetrics:
    return CloudWatchMetrics(cloudwatch, NAMESPACE, DIMENSION_VALUES, **options)


# --- what is published ---------------------------------------------------------------------


def test_samples_are_published_per_second_with_their_unit_dimension_and_event_time(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch)
    during_t0 = T0 + timedelta(milliseconds=400)
    for _ in range(3):
        metrics.add("TasksAccepted", 1, "Count", at=during_t0)
    for latency_ms in (100.0, 200.0, 300.4):
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=during_t0)

    metrics.flush()

    assert statistics(cloudwatch, "TasksAccepted") == {
        "SampleCount": 3,
        "Sum": 3,
        "Minimum": 1,
        "Maximum": 1,
        "Unit": {"Count"},
    }
    assert statistics(cloudwatch, "EndToEndLatency") == {
        "SampleCount": 3,
        "Sum": 600,  # whole milliseconds
        "Minimum": 100,
        "Maximum": 300,
        "Unit": {"Milliseconds"},
    }
    [call] = put_calls
    assert call["Namespace"] == NAMESPACE
    for datum in call["MetricData"]:
        assert datum["Dimensions"] == DIMENSIONS
        assert datum["StorageResolution"] == 1
        assert datum["Timestamp"] == T0  # the second the events happened in, not the flush's
    accepted = next(d for d in call["MetricData"] if d["MetricName"] == "TasksAccepted")
    assert (accepted["Values"], accepted["Counts"]) == ([1.0], [3.0])  # one value, counted


def test_a_sample_without_a_time_is_stamped_when_it_is_added(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch, wall_clock=lambda: T0 + timedelta(seconds=7, milliseconds=900))

    metrics.add("TasksFailed", 1, "Count")
    metrics.flush()

    assert [d["Timestamp"] for d in datums(put_calls)] == [T0 + timedelta(seconds=7)]


# --- batching: as few calls as PutMetricData's limits allow --------------------------------


def test_2500_samples_in_2500_seconds_take_ceil_2500_over_1000_calls(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch)
    for second in range(2500):
        metrics.add("TasksProcessed", 1, "Count", at=T0 + timedelta(seconds=second))

    metrics.flush()

    assert len(put_calls) == math.ceil(2500 / 1000)
    assert [len(call["MetricData"]) for call in put_calls] == [1000, 1000, 500]
    assert statistics(cloudwatch, "TasksProcessed", seconds=2500)["Sum"] == 2500


def test_2500_samples_of_one_counter_in_one_second_are_one_datum_in_one_call(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch)
    for _ in range(2500):
        metrics.add("TasksAccepted", 1, "Count", at=T0)

    metrics.flush()

    [call] = put_calls
    [datum] = call["MetricData"]
    assert (datum["Values"], datum["Counts"]) == ([1.0], [2500.0])
    assert statistics(cloudwatch, "TasksAccepted")["Sum"] == 2500


def test_many_distinct_values_split_into_datums_of_150_and_calls_of_5000_values(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch)
    for latency_ms in range(12_000):
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=T0)

    metrics.flush()

    sent = datums(put_calls)
    assert len(sent) == math.ceil(12_000 / 150)
    assert max(len(d["Values"]) for d in sent) == 150
    assert [sum(len(d["Values"]) for d in call["MetricData"]) for call in put_calls] == [
        4950,  # 33 datums of 150: a 34th would pass 5,000 values
        4950,
        2100,
    ]
    assert statistics(cloudwatch, "EndToEndLatency")["SampleCount"] == 12_000


def test_one_flush_is_one_call_and_nothing_pending_is_no_call(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch)
    metrics.flush()
    assert put_calls == []

    metrics.add("TasksAccepted", 1, "Count", at=T0)
    metrics.add("BatchSize", 10, "Count", at=T0)
    metrics.add("TasksRetried", 1, "Count", at=T0 + timedelta(seconds=1))
    metrics.flush()
    metrics.flush()

    assert len(put_calls) == 1
    assert len(put_calls[0]["MetricData"]) == 3


# --- when: at most once per interval, and a timer for what is left ---------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timers() -> FakeScheduler:
    return FakeScheduler()


@pytest.fixture
def api_metrics(cloudwatch: Any, clock: FakeClock, timers: FakeScheduler) -> CloudWatchMetrics:
    return sink(cloudwatch, min_flush_interval_s=1.0, schedule=timers, monotonic=clock)


def test_the_first_flush_publishes_then_the_timer_publishes_what_came_within_the_second(
    api_metrics: CloudWatchMetrics,
    clock: FakeClock,
    timers: FakeScheduler,
    put_calls: list[dict[str, Any]],
) -> None:
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()
    assert len(put_calls) == 1 and timers.timers == []

    clock.now = 0.3
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()
    clock.now = 0.6
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()

    assert len(put_calls) == 1  # held back: less than a second since the last publish
    assert [delay for delay, _ in timers.timers] == [pytest.approx(0.7)]  # one timer, not two

    clock.now = 1.0
    timers.fire()

    assert len(put_calls) == 2
    assert datums(put_calls[1:])[0]["Counts"] == [2.0]


def test_a_request_after_the_interval_publishes_and_the_timer_then_finds_nothing(
    api_metrics: CloudWatchMetrics,
    clock: FakeClock,
    timers: FakeScheduler,
    put_calls: list[dict[str, Any]],
) -> None:
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()
    clock.now = 0.5
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()

    clock.now = 1.2
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()
    timers.fire()

    assert len(put_calls) == 2
    assert [d["Counts"] for d in datums(put_calls)] == [[1.0], [2.0]]


def test_a_timer_that_fires_early_waits_for_the_rest_of_the_interval(
    api_metrics: CloudWatchMetrics,
    clock: FakeClock,
    timers: FakeScheduler,
    put_calls: list[dict[str, Any]],
) -> None:
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()
    clock.now = 0.2
    api_metrics.add("TasksAccepted", 1, "Count", at=T0)
    api_metrics.flush()

    clock.now = 0.9
    timers.fire()

    assert len(put_calls) == 1
    assert [delay for delay, _ in timers.timers] == [pytest.approx(0.1)]


def test_100_requests_within_a_second_make_two_calls(
    cloudwatch: Any,
    clock: FakeClock,
    timers: FakeScheduler,
    put_calls: list[dict[str, Any]],
) -> None:
    service = TaskService(
        InMemoryTaskQueue(),
        InMemoryTaskStore(),
        sink(cloudwatch, min_flush_interval_s=1.0, schedule=timers, monotonic=clock),
        clock=lambda: T0,
    )
    for request in range(100):
        clock.now = request / 100
        service.submit_one(TaskRequest("echo", {"i": request}), f"req-{request}")
    clock.now = 1.0
    timers.fire()

    assert len(put_calls) == 2  # the first request's, then the timer's for the other 99
    assert statistics(cloudwatch, "TasksAccepted")["Sum"] == 100


def test_the_default_timer_runs_on_a_daemon_thread() -> None:
    """A daemon thread never keeps a process (a Lambda runtime, a test run) from exiting."""
    ran_on: list[threading.Thread] = []
    done = threading.Event()

    def action() -> None:
        ran_on.append(threading.current_thread())
        done.set()

    start_daemon_timer(0.01, action)

    assert done.wait(timeout=5)
    assert ran_on[0] is not threading.main_thread() and ran_on[0].daemon


def test_the_default_timer_publishes_what_was_held_back(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    metrics = sink(cloudwatch, min_flush_interval_s=0.05)
    metrics.add("TasksAccepted", 1, "Count", at=T0)
    metrics.flush()
    metrics.add("TasksAccepted", 1, "Count", at=T0)
    metrics.flush()

    deadline = time.monotonic() + 5
    while len(put_calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition: the timer's thread publishes

    assert len(put_calls) == 2
    assert statistics(cloudwatch, "TasksAccepted")["Sum"] == 2


# --- failures never reach the caller ---------------------------------------------------------


def fail_first_calls(cloudwatch: Any, failures: int, error: Exception) -> list[int]:
    """PutMetricData raises `error` on its first `failures` calls; returns the attempts made."""
    attempts: list[int] = []

    def maybe_fail(**kwargs: Any) -> None:
        attempts.append(1)
        if len(attempts) <= failures:
            raise error

    cloudwatch.meta.events.register("before-call.cloudwatch.PutMetricData", maybe_fail)
    return attempts


def test_a_failed_publish_is_kept_and_sent_with_the_next_one(
    cloudwatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    timers: list[float] = []
    metrics = sink(cloudwatch, schedule=lambda delay, action: timers.append(delay))
    fail_first_calls(cloudwatch, 1, EndpointConnectionError(endpoint_url="https://cw.example"))
    metrics.add("TasksAccepted", 1, "Count", at=T0)

    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        metrics.flush()  # does not raise
    metrics.add("TasksAccepted", 1, "Count", at=T0)
    metrics.add("TasksRetried", 1, "Count", at=T0)
    metrics.flush()

    # Delayed, not lost: both TasksAccepted samples arrive, with the later one.
    assert statistics(cloudwatch, "TasksAccepted")["Sum"] == 2
    assert statistics(cloudwatch, "TasksRetried")["Sum"] == 1
    assert timers == [RETRY_AFTER_S]  # a retry is armed in case no later flush comes
    [line] = [r for r in caplog.records if r.name == "chalicelib.cloudwatch_metrics"]
    assert line.levelno == logging.WARNING
    assert "1 datums kept for the next publish" in line.getMessage()
    assert "EndpointConnectionError" in line.getMessage()


def test_an_unreachable_cloudwatch_costs_one_attempt_per_flush_not_one_per_chunk(
    cloudwatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    error = EndpointConnectionError(endpoint_url="https://monitoring.example")
    attempts = fail_first_calls(cloudwatch, 10, error)
    metrics = sink(cloudwatch, schedule=lambda delay, action: None)
    for second in range(2500):
        metrics.add("TasksProcessed", 1, "Count", at=T0 + timedelta(seconds=second))

    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        metrics.flush()

    assert len(attempts) == 1
    [line] = [r for r in caplog.records if r.name == "chalicelib.cloudwatch_metrics"]
    assert "2500 datums kept for the next publish" in line.getMessage()


def test_what_a_failed_publish_kept_still_fits_the_bounded_buffer(
    cloudwatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = sink(cloudwatch, max_pending_values=3, schedule=lambda delay, action: None)
    fail_first_calls(cloudwatch, 1, EndpointConnectionError(endpoint_url="https://cw.example"))
    for latency_ms in (10, 20, 30):
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=T0)
    metrics.flush()  # fails: the three values go back
    metrics.add("EndToEndLatency", 40, "Milliseconds", at=T0)  # no room left

    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        metrics.flush()

    assert statistics(cloudwatch, "EndToEndLatency")["SampleCount"] == 3
    assert "1 samples were dropped" in caplog.text


def test_the_buffer_is_bounded_and_says_what_it_dropped(
    cloudwatch: Any, put_calls: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = sink(cloudwatch, max_pending_values=3)
    for latency_ms in (10, 20, 30, 40, 50):  # 40 and 50 find the buffer full
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=T0)
    metrics.add("EndToEndLatency", 10, "Milliseconds", at=T0)  # a known value takes no room

    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        metrics.flush()

    [datum] = datums(put_calls)
    assert (datum["Values"], datum["Counts"]) == ([10.0, 20.0, 30.0], [2.0, 1.0, 1.0])
    assert "2 samples were dropped" in caplog.text


# --- the app's two paths, end to end on moto ---------------------------------------------------


def test_a_worker_batch_is_published_in_one_call(
    cloudwatch: Any, put_calls: list[dict[str, Any]]
) -> None:
    store = InMemoryTaskStore()
    accept_tasks_of(store, "sqs_partial_failure")
    worker = new_worker(store, sink(cloudwatch), runner=TaskRunner())

    worker.handle(event("sqs_partial_failure"), FakeContext())

    assert len(put_calls) == 1
    names = sorted(d["MetricName"] for d in datums(put_calls))
    assert names == ["BatchSize", "EndToEndLatency", "TasksProcessed", "TasksRetried"]
    assert statistics(cloudwatch, "BatchSize", start=datetime.now(UTC))["Sum"] == 3
    assert statistics(cloudwatch, "TasksRetried", start=datetime.now(UTC))["Sum"] == 1


def test_the_wiring_publishes_to_the_configured_namespace_with_short_timeouts(
    cloudwatch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SETTINGS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    deps = Dependencies(Logger(service="test"))

    deps.metrics.add("TasksAccepted", 1, "Count", at=T0)
    deps.metrics.flush()  # the first flush publishes at once

    assert statistics(cloudwatch, "TasksAccepted")["Sum"] == 1
    assert deps.cloudwatch.meta.config.read_timeout == 3
    assert deps.cloudwatch.meta.config.retries["total_max_attempts"] == 1
