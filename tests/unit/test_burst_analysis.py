"""The burst's figures: percentiles, worker batches at once, the per-second timeline, and the
integrity check, from hand-made rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from burst.analysis import (
    TaskRow,
    TimelineInputs,
    batch_intervals,
    build_timeline,
    check_integrity,
    count_per_second,
    last_sample_per_second,
    max_open_per_second,
    peak_overlap,
    percentile,
    percentiles,
)

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
PREFIX = "burst-R-"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(
    task_id: str,
    number: int | None = None,
    batch: str | None = None,
    start: float | None = None,
    end: float | None = None,
    status: str = "done",
) -> TaskRow:
    return TaskRow(
        id=task_id,
        status=status,
        idempotency_key=None if number is None else f"{PREFIX}{number}",
        accepted_at=T0,
        started_at=None if start is None else at(start),
        finished_at=None if end is None else at(end),
        worker_request_id=batch,
    )


# --- percentiles


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]  # 1 .. 100

    assert (percentile(samples, 0.5), percentile(samples, 0.95)) == (50.0, 95.0)
    assert (percentile(samples, 0.99), percentile(samples, 1.0)) == (99.0, 100.0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentiles_of_unsorted_samples_and_of_none() -> None:
    assert percentiles([3.0, 1.0, 2.0]) == {"p50": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0, "n": 3}
    assert percentiles([]) is None
    with pytest.raises(ValueError):
        percentile([], 0.5)


# --- batches


def test_a_batch_spans_its_tasks_from_first_start_to_last_finish() -> None:
    rows = [
        row("a", batch="req-1", start=1.0, end=1.5),
        row("b", batch="req-1", start=1.5, end=2.5),
        row("c", batch="req-2", start=2.0, end=3.0),
        row("d", status="queued"),  # not run yet: no batch
    ]

    assert batch_intervals(rows) == {"req-1": (at(1.0), at(2.5)), "req-2": (at(2.0), at(3.0))}


def test_peak_overlap_counts_batches_running_at_once_and_when() -> None:
    spans = [(at(0), at(2)), (at(1), at(3)), (at(1.5), at(1.6)), (at(5), at(6))]

    peak = peak_overlap(spans)

    assert (peak.count, peak.at) == (3, at(1.5))


def test_back_to_back_batches_do_not_overlap() -> None:
    assert peak_overlap([(at(0), at(1)), (at(1), at(2)), (at(2), at(3))]).count == 1
    assert peak_overlap([]).count == 0 and peak_overlap([]).at is None


# --- the timeline


def test_events_are_counted_in_their_second() -> None:
    assert count_per_second([0.0, 0.99, 1.0, 2.5, -0.1, 9.0], 3) == [3, 1, 1]


def test_the_most_batches_open_in_each_second() -> None:
    intervals = [(0.2, 0.4), (0.3, 2.5), (1.1, 1.2), (1.15, 1.3), (2.6, 2.7)]

    # second 0: 2 at 0.3; second 1: 1 from before + 2 briefly; second 2: 1, then 1; 3: none
    assert max_open_per_second(intervals, 4) == [2, 3, 1, 0]


def test_a_batch_running_across_seconds_counts_in_each() -> None:
    assert max_open_per_second([(0.5, 3.5)], 5) == [1, 1, 1, 1, 0]


def test_the_last_queue_sample_of_a_second_stands_for_it_and_gaps_stay_empty() -> None:
    samples = [(0.1, 5), (0.9, 7), (2.2, 3)]

    assert last_sample_per_second(samples, 4) == [7, None, 3, None]


def test_the_timeline_has_one_entry_per_second_from_the_first_send() -> None:
    inputs = TimelineInputs(
        arrivals=[0.0, 0.1, 1.2],
        planned=[0.0, 0.05, 1.0],
        queue_samples=[(0.0, 0, 0), (1.0, 2, 1), (2.0, 0, 1)],
        batches=[(1.5, 2.4)],
        completions=[2.3, 2.4, 3.1],
        extra={"lambda_concurrent_executions": [(1.7, 1.0)]},
    )

    timeline = build_timeline(inputs)

    assert [e["second"] for e in timeline] == [0, 1, 2, 3]
    assert [e["arrivals"] for e in timeline] == [2, 1, 0, 0]
    assert [e["planned"] for e in timeline] == [2, 1, 0, 0]
    assert [e["queue_visible"] for e in timeline] == [0, 2, 0, None]
    assert [e["queue_in_flight"] for e in timeline] == [0, 1, 1, None]
    assert [e["concurrent_batches"] for e in timeline] == [0, 1, 1, 0]
    assert [e["completions"] for e in timeline] == [0, 0, 2, 1]
    # an optional series appears only where it has a datapoint
    assert [e.get("lambda_concurrent_executions") for e in timeline] == [None, 1.0, None, None]


# --- integrity


def test_one_row_per_accepted_task_passes() -> None:
    result = check_integrity([(0, "a"), (1, "b")], [row("a", 0), row("b", 1)], PREFIX)

    assert result.ok
    assert (result.accepted, result.rows) == (2, 2)


def test_an_accepted_task_without_a_row_is_lost() -> None:
    result = check_integrity([(0, "a"), (1, "b")], [row("a", 0)], PREFIX)

    assert (result.ok, result.lost, result.duplicated, result.unexpected) == (
        False,
        ("b",),
        (),
        (),
    )


def test_two_rows_for_one_task_are_duplicated() -> None:
    same_id_twice = check_integrity([(0, "a")], [row("a", 0), row("a", 0)], PREFIX)
    same_key_twice = check_integrity([(0, "a")], [row("a", 0), row("z", 0)], PREFIX)
    one_id_for_two_tasks = check_integrity([(0, "a"), (1, "a")], [row("a", 0)], PREFIX)

    assert same_id_twice.duplicated == ("a",)
    assert set(same_key_twice.duplicated) == {"a", "z"}
    assert one_id_for_two_tasks.duplicated == ("a",)
    assert not (same_id_twice.ok or same_key_twice.ok or one_id_for_two_tasks.ok)


def test_a_row_of_the_run_that_no_answer_accepted_is_unexpected() -> None:
    rows = [row("a", 0), row("b", 1), TaskRow("c", "done", "burst-OTHER-1", T0)]

    result = check_integrity([(0, "a")], rows, PREFIX)

    assert result.unexpected == ("b",)  # another run's row is not this run's business
    assert not result.ok
    assert result.to_json()["unexpected"] == ["b"]
