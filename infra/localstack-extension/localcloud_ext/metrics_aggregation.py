"""Per-second aggregation of service metrics, free of LocalStack so it is unit-testable anywhere.

Recording (called on LocalStack's request threads) only updates in-memory counters under one
lock: a few microseconds. Once a second the publisher calls :meth:`ServiceMetrics.collect`, which
closes every whole second that has ended and turns it into CloudWatch datums, timestamped with
the second the data belongs to. :func:`batch_datums` cuts them into PutMetricData-sized calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, NotRequired, TypedDict

LOG = logging.getLogger(__name__)

LAMBDA_NAMESPACE = "AWS/Lambda"
SQS_NAMESPACE = "AWS/SQS"
FUNCTION_DIMENSION = "FunctionName"
QUEUE_DIMENSION = "QueueName"
COUNT = "Count"
MILLISECONDS = "Milliseconds"
SECONDS = "Seconds"
HIGH_RESOLUTION = 1  # StorageResolution: keep every 1-second datapoint
MAX_DATUMS_PER_CALL = 1000  # CloudWatch's PutMetricData limit
# After a stall (a suspended laptop, a starved thread) a gap of hours must not turn into a loop
# over every missed second: concurrency is carried over at most this many seconds.
MAX_CATCH_UP_SECONDS = 60

Clock = Callable[[], float]


class Dimension(TypedDict):
    Name: str
    Value: str


class StatisticSet(TypedDict):
    SampleCount: float
    Sum: float
    Minimum: float
    Maximum: float


class MetricDatum(TypedDict):
    """One entry of PutMetricData's MetricData, as boto3 and LocalStack's provider take it."""

    MetricName: str
    Dimensions: list[Dimension]
    Timestamp: datetime
    Unit: str
    StorageResolution: int
    Value: NotRequired[float]
    StatisticValues: NotRequired[StatisticSet]


class Destination(NamedTuple):
    """What one PutMetricData call is scoped to."""

    account_id: str
    region: str
    namespace: str


class Series(NamedTuple):
    """One metric time series: destination, name, dimensions and unit. A tuple, so that hashing
    it (once per recorded event) stays in C."""

    destination: Destination
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str

    def datum(self, second: int, value: float) -> MetricDatum:
        datum = self._bare(second)
        datum["Value"] = float(value)
        return datum

    def statistics_datum(self, second: int, stats: StatisticSet) -> MetricDatum:
        datum = self._bare(second)
        datum["StatisticValues"] = stats
        return datum

    def _bare(self, second: int) -> MetricDatum:
        return MetricDatum(
            MetricName=self.metric,
            Dimensions=[Dimension(Name=name, Value=value) for name, value in self.dimensions],
            Timestamp=datetime.fromtimestamp(second, UTC),
            Unit=self.unit,
            StorageResolution=HIGH_RESOLUTION,
        )


@dataclass(frozen=True)
class Sample:
    """A gauge's value for the second that just ended."""

    series: Series
    value: float


@dataclass
class PutMetricDataCall:
    destination: Destination
    datums: list[MetricDatum]


def function_series(
    account_id: str, region: str, function_name: str, metric: str, unit: str = COUNT
) -> Series:
    return Series(
        Destination(account_id, region, LAMBDA_NAMESPACE),
        metric,
        ((FUNCTION_DIMENSION, function_name),),
        unit,
    )


def queue_series(
    account_id: str, region: str, queue_name: str, metric: str, unit: str = COUNT
) -> Series:
    return Series(
        Destination(account_id, region, SQS_NAMESPACE),
        metric,
        ((QUEUE_DIMENSION, queue_name),),
        unit,
    )


def batch_datums(
    datums: Iterable[tuple[Destination, MetricDatum]], limit: int = MAX_DATUMS_PER_CALL
) -> list[PutMetricDataCall]:
    """Group datums per (account, region, namespace), at most `limit` per call, in input order."""
    grouped: dict[Destination, list[MetricDatum]] = {}
    for destination, datum in datums:
        grouped.setdefault(destination, []).append(datum)
    return [
        PutMetricDataCall(destination, group[start : start + limit])
        for destination, group in grouped.items()
        for start in range(0, len(group), limit)
    ]


@dataclass
class _DurationStats:
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def statistic_set(self) -> StatisticSet:
        return StatisticSet(
            SampleCount=float(self.count),
            Sum=self.total,
            Minimum=self.minimum,
            Maximum=self.maximum,
        )


@dataclass
class _SecondOfConcurrency:
    level_at_start: int  # invocations in flight when the second began
    peak: int


@dataclass
class _Concurrency:
    """In-flight invocations of one function, and their peak per second with any change.

    A second with no start or finish has a constant level: the level at the start of the next
    second that has a change, or the current level if none has happened since."""

    current: int = 0
    changed_seconds: dict[int, _SecondOfConcurrency] = field(default_factory=dict)
    last_published_busy: bool = False

    def _second(self, second: int) -> _SecondOfConcurrency:
        entry = self.changed_seconds.get(second)
        if entry is None:
            entry = self.changed_seconds[second] = _SecondOfConcurrency(self.current, self.current)
        return entry

    def started(self, second: int) -> None:
        entry = self._second(second)
        self.current += 1
        entry.peak = max(entry.peak, self.current)

    def finished(self, second: int) -> None:
        self._second(second)  # the peak already includes the level before this finish
        self.current = max(0, self.current - 1)

    def peak_in(self, second: int) -> int:
        entry = self.changed_seconds.get(second)
        if entry is not None:
            return entry.peak
        later = [s for s in self.changed_seconds if s > second]
        return self.changed_seconds[min(later)].level_at_start if later else self.current

    def forget_before(self, second: int) -> None:
        for old in [s for s in self.changed_seconds if s < second]:
            del self.changed_seconds[old]

    @property
    def idle(self) -> bool:
        return self.current == 0 and not self.changed_seconds and not self.last_published_busy


@dataclass
class _Gauge:
    series: Series
    read: Callable[[], float]


Sampler = Callable[[], Iterable[Sample]]


class ServiceMetrics:
    """Counters, statistic sets, in-flight levels and gauges, closed and emitted per second."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sums: dict[int, dict[Series, float]] = {}
        self._durations: dict[int, dict[Series, _DurationStats]] = {}
        self._concurrency: dict[Series, _Concurrency] = {}
        self._gauges: dict[str, _Gauge] = {}
        self._samplers: list[Sampler] = []
        self._next_second: int | None = None  # the oldest second not yet collected
        # built once per (kind, metric, account, region, name): recording then costs a dict hit
        self._series: dict[tuple[str, str, str, str, str], Series] = {}

    def _function(self, account_id: str, region: str, name: str, metric: str) -> Series:
        key = ("function", metric, account_id, region, name)
        series = self._series.get(key)
        if series is None:
            unit = MILLISECONDS if metric == "Duration" else COUNT
            series = self._series[key] = function_series(account_id, region, name, metric, unit)
        return series

    def _queue(self, account_id: str, region: str, name: str, metric: str) -> Series:
        key = ("queue", metric, account_id, region, name)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = queue_series(account_id, region, name, metric)
        return series

    # --- recording, on request threads -------------------------------------------------------

    def add(self, series: Series, amount: float = 1) -> None:
        """Add to a per-second sum (Invocations, Errors, NumberOfMessagesSent, ...)."""
        if not amount:
            return
        with self._lock:
            bucket = self._sums.setdefault(int(self._clock()), {})
            bucket[series] = bucket.get(series, 0) + amount

    def invocation_completed(
        self, account_id: str, region: str, function_name: str, *, is_error: bool
    ) -> None:
        self.add(self._function(account_id, region, function_name, "Invocations"))
        if is_error:
            self.add(self._function(account_id, region, function_name, "Errors"))

    def invocation_throttled(self, account_id: str, region: str, function_name: str) -> None:
        self.add(self._function(account_id, region, function_name, "Throttles"))

    def execution_started(self, account_id: str, region: str, function_name: str) -> None:
        series = self._function(account_id, region, function_name, "ConcurrentExecutions")
        with self._lock:
            state = self._concurrency.get(series)
            if state is None:
                state = self._concurrency[series] = _Concurrency()
            state.started(int(self._clock()))

    def execution_finished(
        self, account_id: str, region: str, function_name: str, duration_ms: float
    ) -> None:
        concurrency = self._function(account_id, region, function_name, "ConcurrentExecutions")
        duration = self._function(account_id, region, function_name, "Duration")
        with self._lock:
            second = int(self._clock())
            state = self._concurrency.get(concurrency)
            if state is not None:
                state.finished(second)
            stats = self._durations.setdefault(second, {})
            stats.setdefault(duration, _DurationStats()).add(duration_ms)

    def messages_sent(self, account_id: str, region: str, queue_name: str, count: int = 1) -> None:
        self.add(self._queue(account_id, region, queue_name, "NumberOfMessagesSent"), count)

    def messages_deleted(
        self, account_id: str, region: str, queue_name: str, count: int = 1
    ) -> None:
        self.add(self._queue(account_id, region, queue_name, "NumberOfMessagesDeleted"), count)

    # --- gauges -------------------------------------------------------------------------------

    def register_gauge(self, key: str, series: Series, read: Callable[[], float]) -> None:
        with self._lock:
            self._gauges[key] = _Gauge(series, read)

    def unregister_gauge(self, key: str) -> None:
        with self._lock:
            self._gauges.pop(key, None)

    def add_sampler(self, sampler: Sampler) -> None:
        """A source of many gauges at once (every SQS queue), read once per second."""
        with self._lock:
            if sampler not in self._samplers:
                self._samplers.append(sampler)

    # --- once per second, on the publisher thread ----------------------------------------------

    def collect(self) -> list[tuple[Destination, MetricDatum]]:
        """Datums of every whole second that has ended since the last call (none if none has)."""
        now = int(self._clock())  # the second in progress: still open
        with self._lock:
            first = now - 1 if self._next_second is None else self._next_second
            if first >= now:
                return []
            self._next_second = now
            datums = self._close_sums(now) + self._close_durations(now)
            datums += self._close_concurrency(max(first, now - MAX_CATCH_UP_SECONDS), now)
            gauges = list(self._gauges.values())
            samplers = list(self._samplers)
        # gauges run outside the lock: their read() is other code and must not delay recording
        ended = now - 1
        datums += self._read_gauges(gauges, ended)
        datums += self._read_samplers(samplers, ended)
        return datums

    def _close_sums(self, now: int) -> list[tuple[Destination, MetricDatum]]:
        datums = []
        for second in sorted(s for s in self._sums if s < now):
            for series, total in self._sums.pop(second).items():
                datums.append((series.destination, series.datum(second, total)))
        return datums

    def _close_durations(self, now: int) -> list[tuple[Destination, MetricDatum]]:
        datums = []
        for second in sorted(s for s in self._durations if s < now):
            for series, stats in self._durations.pop(second).items():
                datums.append(
                    (series.destination, series.statistics_datum(second, stats.statistic_set()))
                )
        return datums

    def _close_concurrency(self, first: int, now: int) -> list[tuple[Destination, MetricDatum]]:
        """The peak per second while busy, then one 0 once a whole second had nothing in flight."""
        datums = []
        for series, state in list(self._concurrency.items()):
            for second in range(first, now):
                peak = state.peak_in(second)
                if peak > 0 or state.last_published_busy:
                    datums.append((series.destination, series.datum(second, peak)))
                state.last_published_busy = peak > 0
            state.forget_before(now)
            if state.idle:
                del self._concurrency[series]
        return datums

    @staticmethod
    def _read_gauges(gauges: list[_Gauge], second: int) -> list[tuple[Destination, MetricDatum]]:
        datums = []
        for gauge in gauges:
            try:
                value = float(gauge.read())
            except Exception:  # someone else's reader: skip it this second, keep publishing
                LOG.debug("gauge %s failed; skipped this second", gauge.series, exc_info=True)
                continue
            datums.append((gauge.series.destination, gauge.series.datum(second, value)))
        return datums

    @staticmethod
    def _read_samplers(
        samplers: list[Sampler], second: int
    ) -> list[tuple[Destination, MetricDatum]]:
        datums = []
        for sampler in samplers:
            try:
                samples = list(sampler())
            except Exception:
                LOG.debug("sampler %s failed; skipped this second", sampler, exc_info=True)
                continue
            datums += [(s.series.destination, s.series.datum(second, s.value)) for s in samples]
        return datums
