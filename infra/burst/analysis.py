"""The figures of a burst, from what was sent and what the database holds afterwards. Pure
functions of their inputs, so each is tested without a cloud."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.model import FINAL_STATUSES

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class TaskRow:
    """What the burst reads of a row of the tasks table."""

    id: str
    status: str
    idempotency_key: str | None
    accepted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_request_id: str | None = None
    attempts: int = 0

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> TaskRow:
        return cls(
            id=str(row["id"]),
            status=row["status"],
            idempotency_key=row["idempotency_key"],
            accepted_at=row["accepted_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            worker_request_id=row["worker_request_id"],
            attempts=row["attempts"],
        )


# --- percentiles ----------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least `fraction` of the samples
    at or below it (p50 of [1, 2, 3, 4] is 2; p100 is the maximum)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def percentiles(samples: Sequence[float]) -> dict[str, float] | None:
    """p50 / p95 / p99 (and the count), or None when there is no sample."""
    if not samples:
        return None
    return {
        "p50": percentile(samples, 0.50),
        "p95": percentile(samples, 0.95),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
        "n": len(samples),
    }


# --- worker batches -------------------------------------------------------------------------


def batch_intervals(rows: Iterable[TaskRow]) -> dict[str, Interval]:
    """Each worker invocation (Lambda request id: one SQS batch) with the span of the tasks it
    ran: the earliest start to the latest finish among its rows."""
    spans: dict[str, Interval] = {}
    for row in rows:
        if not (row.worker_request_id and row.started_at and row.finished_at):
            continue
        start, end = spans.get(row.worker_request_id, (row.started_at, row.finished_at))
        spans[row.worker_request_id] = (min(start, row.started_at), max(end, row.finished_at))
    return spans


@dataclass(frozen=True)
class Peak:
    count: int
    at: datetime | None  # when the count was first reached


def peak_overlap(intervals: Iterable[Interval]) -> Peak:
    """The most intervals open at one moment, and the first moment it happened. A sweep over
    starts and ends; at equal times ends go first, so back-to-back batches are not counted as
    overlapping."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak, at, current = 0, None, 0
    for moment, step in events:
        current += step
        if current > peak:
            peak, at = current, moment
    return Peak(peak, at)


# --- the timeline, per second from the first send --------------------------------------------


def seconds_after(origin: datetime, moment: datetime) -> float:
    return (moment - origin).total_seconds()


def count_per_second(offsets: Iterable[float], seconds: int) -> list[int]:
    """How many events fell in each second [s, s+1) of 0 .. seconds-1; earlier ones count in
    second 0, later ones are dropped."""
    counts = [0] * seconds
    for offset in offsets:
        second = max(0, math.floor(offset))
        if second < seconds:
            counts[second] += 1
    return counts


def max_open_per_second(intervals: Iterable[tuple[float, float]], seconds: int) -> list[int]:
    """The most intervals open at any moment of each second: the count at the second's start,
    and every higher count reached during it."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peaks = [0] * seconds
    current, index = 0, 0
    for second in range(seconds):
        peaks[second] = current  # open since an earlier second
        while index < len(events) and events[index][0] < second + 1:
            current += events[index][1]
            if events[index][0] >= second:
                peaks[second] = max(peaks[second], current)
            else:
                peaks[second] = current  # an event before second 0
            index += 1
    return peaks


def last_sample_per_second(samples: Iterable[tuple[float, int]], seconds: int) -> list[int | None]:
    """The last reading taken in each second, None where none was."""
    values: list[int | None] = [None] * seconds
    for offset, value in sorted(samples, key=lambda s: s[0]):
        second = max(0, math.floor(offset))
        if second < seconds:
            values[second] = value
    return values


def max_sample_per_second(
    samples: Iterable[tuple[float, float]], seconds: int
) -> list[float | None]:
    values: list[float | None] = [None] * seconds
    for offset, value in samples:
        second = math.floor(offset)
        if 0 <= second < seconds:
            current = values[second]
            values[second] = value if current is None else max(current, value)
    return values


@dataclass
class TimelineInputs:
    """Everything the timeline is built from, as seconds after the first send."""

    arrivals: list[float]  # one per task sent, at its request's send time
    planned: list[float]  # one per task scheduled, at its request's due time
    queue_samples: list[tuple[float, int, int]]  # (offset, visible, in flight)
    batches: list[tuple[float, float]]  # each worker batch's (start, end)
    completions: list[float]  # each row's finished_at
    # optional series, e.g. CloudWatch's, by name: (offset, value) datapoints
    extra: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def timeline_length(inputs: TimelineInputs) -> int:
    """Seconds from the first send to the last thing seen, at least 1."""
    ends = [*inputs.arrivals, *inputs.completions, *(end for _, end in inputs.batches)]
    ends += [offset for offset, _, _ in inputs.queue_samples]
    return max(1, math.floor(max(ends, default=0.0)) + 1)


def build_timeline(inputs: TimelineInputs) -> list[dict[str, Any]]:
    """One entry per second: tasks due and tasks sent, the task queue's depth (visible and
    in flight, as sampled), worker batches running (the most at once in that second), rows
    finished; plus each optional series (its maximum in that second) when it has a datapoint."""
    seconds = timeline_length(inputs)
    arrivals = count_per_second(inputs.arrivals, seconds)
    planned = count_per_second(inputs.planned, seconds)
    visible = last_sample_per_second([(t, v) for t, v, _ in inputs.queue_samples], seconds)
    in_flight = last_sample_per_second([(t, f) for t, _, f in inputs.queue_samples], seconds)
    batches = max_open_per_second(inputs.batches, seconds)
    completions = count_per_second(inputs.completions, seconds)
    extra = {name: max_sample_per_second(points, seconds) for name, points in inputs.extra.items()}
    timeline = []
    for second in range(seconds):
        entry: dict[str, Any] = {
            "second": second,
            "planned": planned[second],
            "arrivals": arrivals[second],
            "queue_visible": visible[second],
            "queue_in_flight": in_flight[second],
            "concurrent_batches": batches[second],
            "completions": completions[second],
        }
        for name, values in extra.items():
            if values[second] is not None:
                entry[name] = values[second]
        timeline.append(entry)
    return timeline


# --- integrity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integrity:
    """Every accepted task has exactly one row, and every row of the run was accepted.

    lost: accepted ids without a row. duplicated: ids (or task numbers) with more than one row,
    or one id answered for two different tasks. unexpected: rows of the run (by idempotency key)
    whose id no answer accepted, e.g. a request that timed out after the API had kept it."""

    accepted: int
    rows: int
    lost: tuple[str, ...]
    duplicated: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accepted": self.accepted,
            "rows": self.rows,
            "lost": list(self.lost),
            "duplicated": list(self.duplicated),
            "unexpected": list(self.unexpected),
        }


def check_integrity(
    accepted: Sequence[tuple[int, str]], rows: Sequence[TaskRow], key_prefix: str
) -> Integrity:
    """`accepted`: (task number, id) for each task an answer accepted; `rows`: the rows found by
    those ids or by the run's idempotency key prefix."""
    ids_of_number: dict[int, set[str]] = collections.defaultdict(set)
    numbers_of_id: dict[str, set[int]] = collections.defaultdict(set)
    for number, task_id in accepted:
        ids_of_number[number].add(task_id)
        numbers_of_id[task_id].add(number)
    rows_per_id = collections.Counter(row.id for row in rows)
    rows_per_key = collections.Counter(
        row.idempotency_key for row in rows if row.idempotency_key is not None
    )
    lost = sorted(task_id for task_id in numbers_of_id if rows_per_id[task_id] == 0)
    duplicated = {task_id for task_id, n in rows_per_id.items() if n > 1}
    duplicated |= {task_id for task_id, numbers in numbers_of_id.items() if len(numbers) > 1}
    duplicated |= {
        row.id for row in rows if row.idempotency_key and rows_per_key[row.idempotency_key] > 1
    }
    # Two answers with different ids for one task number: two tasks where one was asked for.
    for ids in ids_of_number.values():
        if len(ids) > 1:
            duplicated |= ids
    unexpected = sorted(
        {
            row.id
            for row in rows
            if row.id not in numbers_of_id
            and row.idempotency_key is not None
            and row.idempotency_key.startswith(key_prefix)
        }
    )
    return Integrity(
        accepted=len(numbers_of_id),
        rows=len(rows),
        lost=tuple(lost),
        duplicated=tuple(sorted(duplicated)),
        unexpected=tuple(unexpected),
    )
