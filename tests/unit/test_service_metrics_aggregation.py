"""Per-second aggregation of the local cloud's service metrics, on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from localcloud_ext.metrics_aggregation import (
    MAX_DATUMS_PER_CALL,
    Destination,
    MetricDatum,
    Sample,
    ServiceMetrics,
    batch_datums,
    function_series,
    queue_series,
)

ACCOUNT, REGION = "000000000000", "us-east-1"
T0 = 1_800_000_000  # a whole second


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(clock: FakeClock) -> ServiceMetrics:
    return ServiceMetrics(clock)


def points(datums: list[tuple[Destination, MetricDatum]], metric: str) -> dict[int, Any]:
    """second -> Value (or StatisticValues) of one metric."""
    found: dict[int, Any] = {}
    for _, datum in datums:
        if datum["MetricName"] == metric:
            second = int(datum["Timestamp"].timestamp())
            assert second not in found, f"two {metric} datums for {second}"
            found[second] = datum.get("Value", datum.get("StatisticValues"))
    return found


def collect_at(metrics: ServiceMetrics, clock: FakeClock, now: float) -> list[Any]:
    clock.now = now
    return metrics.collect()


def test_counts_are_summed_per_second_and_stamped_with_their_second(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    clock.now = T0 + 0.1
    for _ in range(3):
        metrics.messages_sent(ACCOUNT, REGION, "tasks")
    metrics.messages_deleted(ACCOUNT, REGION, "tasks", count=7)
    clock.now = T0 + 1.5
    metrics.messages_sent(ACCOUNT, REGION, "tasks")

    datums = collect_at(metrics, clock, T0 + 2.05)

    assert points(datums, "NumberOfMessagesSent") == {T0: 3, T0 + 1: 1}
    assert points(datums, "NumberOfMessagesDeleted") == {T0: 7}
    destination, datum = datums[0]
    assert destination == Destination(ACCOUNT, REGION, "AWS/SQS")
    assert datum["Dimensions"] == [{"Name": "QueueName", "Value": "tasks"}]
    assert datum["Timestamp"] == datetime.fromtimestamp(T0, UTC)
    assert datum["StorageResolution"] == 1 and datum["Unit"] == "Count"


def test_the_second_in_progress_is_not_published_until_it_ends(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    clock.now = T0 + 0.5
    metrics.messages_sent(ACCOUNT, REGION, "tasks")

    assert collect_at(metrics, clock, T0 + 0.9) == []
    assert points(collect_at(metrics, clock, T0 + 1.01), "NumberOfMessagesSent") == {T0: 1}
    assert collect_at(metrics, clock, T0 + 1.5) == []


def test_lambda_outcomes_count_invocations_errors_and_throttles(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    clock.now = T0 + 0.2
    metrics.invocation_completed(ACCOUNT, REGION, "worker", is_error=False)
    metrics.invocation_completed(ACCOUNT, REGION, "worker", is_error=True)
    metrics.invocation_throttled(ACCOUNT, REGION, "worker")
    metrics.invocation_throttled(ACCOUNT, REGION, "worker")

    datums = collect_at(metrics, clock, T0 + 1.05)

    assert points(datums, "Invocations") == {T0: 2}  # an error is an invocation too
    assert points(datums, "Errors") == {T0: 1}
    assert points(datums, "Throttles") == {T0: 2}
    assert all(d["Dimensions"] == [{"Name": "FunctionName", "Value": "worker"}] for _, d in datums)


def test_duration_is_a_statistic_set_per_second(metrics: ServiceMetrics, clock: FakeClock) -> None:
    clock.now = T0 + 0.1
    for duration in (12.0, 30.0, 3.0):
        metrics.execution_started(ACCOUNT, REGION, "worker")
        metrics.execution_finished(ACCOUNT, REGION, "worker", duration)

    datums = collect_at(metrics, clock, T0 + 1.05)

    assert points(datums, "Duration") == {
        T0: {"SampleCount": 3.0, "Sum": 45.0, "Minimum": 3.0, "Maximum": 30.0}
    }
    assert next(d for _, d in datums if d["MetricName"] == "Duration")["Unit"] == "Milliseconds"


def test_concurrency_is_the_peak_in_flight_of_each_second_then_one_zero(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    # GIVEN a long invocation from T0+0.5 to T0+3.5, and two short ones overlapping it in T0+1
    clock.now = T0 + 0.5
    metrics.execution_started(ACCOUNT, REGION, "worker")
    clock.now = T0 + 1.2
    metrics.execution_started(ACCOUNT, REGION, "worker")
    metrics.execution_started(ACCOUNT, REGION, "worker")
    clock.now = T0 + 1.4
    metrics.execution_finished(ACCOUNT, REGION, "worker", 200)
    metrics.execution_finished(ACCOUNT, REGION, "worker", 200)
    clock.now = T0 + 3.5
    metrics.execution_finished(ACCOUNT, REGION, "worker", 3000)

    # WHEN the seconds are collected one by one, as the publisher does
    datums: list[Any] = []
    for second in range(1, 7):
        datums += collect_at(metrics, clock, T0 + second + 0.05)

    # THEN the long invocation holds 1 through T0+2 (no event in it), the overlap peaks at 3,
    # and a single 0 follows the first whole second with nothing in flight
    assert points(datums, "ConcurrentExecutions") == {
        T0: 1,
        T0 + 1: 3,
        T0 + 2: 1,
        T0 + 3: 1,
        T0 + 4: 0,
    }


def test_concurrency_of_a_second_without_events_is_known_before_the_next_event(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    clock.now = T0 + 0.5
    metrics.execution_started(ACCOUNT, REGION, "worker")
    clock.now = T0 + 2.3  # T0+1 had no event; a second invocation starts in T0+2
    metrics.execution_started(ACCOUNT, REGION, "worker")

    datums = collect_at(metrics, clock, T0 + 1.05) + collect_at(metrics, clock, T0 + 3.05)

    assert points(datums, "ConcurrentExecutions") == {T0: 1, T0 + 1: 1, T0 + 2: 2}


def test_a_late_publisher_catches_up_every_second_it_missed(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    collect_at(metrics, clock, T0 + 0.05)
    clock.now = T0 + 0.5
    metrics.execution_started(ACCOUNT, REGION, "worker")
    clock.now = T0 + 2.5
    metrics.execution_finished(ACCOUNT, REGION, "worker", 2000)

    datums = collect_at(metrics, clock, T0 + 5.05)

    assert points(datums, "ConcurrentExecutions") == {T0: 1, T0 + 1: 1, T0 + 2: 1, T0 + 3: 0}


def test_an_idle_function_publishes_no_concurrency(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    clock.now = T0 + 0.5
    metrics.execution_started(ACCOUNT, REGION, "worker")
    metrics.execution_finished(ACCOUNT, REGION, "worker", 5)
    first = collect_at(metrics, clock, T0 + 1.05) + collect_at(metrics, clock, T0 + 2.05)

    later = collect_at(metrics, clock, T0 + 3.05) + collect_at(metrics, clock, T0 + 4.05)

    assert points(first, "ConcurrentExecutions") == {T0: 1, T0 + 1: 0}
    assert later == []


def test_gauges_are_read_once_per_second_and_stamped_with_the_second_that_ended(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    reads = iter([4.0, 9.0])
    series = queue_series(ACCOUNT, REGION, "tasks", "ApproximateNumberOfMessagesVisible")
    metrics.register_gauge("depth", series, lambda: next(reads))

    datums = collect_at(metrics, clock, T0 + 1.05)
    assert collect_at(metrics, clock, T0 + 1.5) == []  # same second: not read again
    datums += collect_at(metrics, clock, T0 + 2.05)

    assert points(datums, "ApproximateNumberOfMessagesVisible") == {T0: 4.0, T0 + 1: 9.0}


def test_a_failing_gauge_is_skipped_and_the_others_still_publish(
    metrics: ServiceMetrics, clock: FakeClock
) -> None:
    def broken() -> float:
        raise RuntimeError("poller gone")

    metrics.register_gauge("broken", function_series(ACCOUNT, REGION, "f", "Broken"), broken)
    metrics.register_gauge("fine", function_series(ACCOUNT, REGION, "f", "Fine"), lambda: 1.0)
    metrics.add_sampler(lambda: [Sample(function_series(ACCOUNT, REGION, "f", "Sampled"), 2.0)])

    datums = collect_at(metrics, clock, T0 + 1.05)

    assert {d["MetricName"] for _, d in datums} == {"Fine", "Sampled"}


def test_an_unregistered_gauge_is_no_longer_read(metrics: ServiceMetrics, clock: FakeClock) -> None:
    metrics.register_gauge("g", function_series(ACCOUNT, REGION, "f", "G"), lambda: 1.0)
    metrics.unregister_gauge("g")
    metrics.unregister_gauge("never-registered")

    assert collect_at(metrics, clock, T0 + 1.05) == []


def test_datums_are_batched_per_destination_at_most_1000_per_call() -> None:
    sqs = queue_series(ACCOUNT, REGION, "q", "NumberOfMessagesSent")
    lam = function_series(ACCOUNT, REGION, "f", "Invocations")
    other_account = queue_series("111111111111", REGION, "q", "NumberOfMessagesSent")
    datums = [(sqs.destination, sqs.datum(T0 + i, 1)) for i in range(2500)]
    datums += [(lam.destination, lam.datum(T0, 1)), (other_account.destination, sqs.datum(T0, 1))]

    calls = batch_datums(datums)

    assert [(c.destination.namespace, c.destination.account_id, len(c.datums)) for c in calls] == [
        ("AWS/SQS", ACCOUNT, 1000),
        ("AWS/SQS", ACCOUNT, 1000),
        ("AWS/SQS", ACCOUNT, 500),
        ("AWS/Lambda", ACCOUNT, 1),
        ("AWS/SQS", "111111111111", 1),
    ]
    assert max(len(c.datums) for c in calls) <= MAX_DATUMS_PER_CALL
