"""The metrics sink on CloudWatch: the app publishes its own metrics with PutMetricData, batched.

Why not Powertools Metrics: its Embedded Metric Format is a log line that CloudWatch Logs turns
into metrics on AWS, but LocalStack does not; publishing ourselves works the same on both.

Batched, never a call per task: samples are aggregated per (metric, unit, second) into one
datum's Values/Counts (a count of 1 per task is one value with a count). Values/Counts rather
than StatisticValues so that CloudWatch can still answer percentiles (p50/p99 of
EndToEndLatency); for a counter they are just as small. (LocalStack stores each counted value
as a row and answers SampleCount/Sum/Min/Max/Average, no percentiles.) A flush sends every
datum in as few calls as PutMetricData's limits allow: one call for up to 1,000 datums.

When to publish is the caller's choice of `min_flush_interval_s`:
- 0 (the worker): every flush() publishes, i.e. once at the end of each batch.
- 1 s (the API): flush() at the end of a request publishes only if a second has passed since
  the last publish; otherwise a daemon timer publishes the rest when that second is over. On AWS
  an execution environment is frozen between invocations, timer included, so data held back
  is published on its next thaw (by the timer or the next request), or lost if Lambda retires
  the frozen environment: at most about one second of one environment's counts.

A failed PutMetricData never fails the request or the batch, and its data is not dropped: it
goes back into the buffer, merged with what was recorded since, and is published with the next
publish (a timer tries again RETRY_AFTER_S later), so under load the metrics arrive late, not
short. The buffer stays bounded (MAX_PENDING_VALUES). The price of never losing a datum: a call
that timed out after CloudWatch had taken it is sent again and counted twice; a read timeout of
a few seconds and no botocore retry make that rare, where a retried timeout is common."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config

from chalicelib.ports import Metrics, MetricUnit

logger = logging.getLogger(__name__)

MAX_DATUMS_PER_CALL = 1000  # PutMetricData's limit
MAX_VALUES_PER_DATUM = 150  # PutMetricData's limit on distinct Values in one datum
# PutMetricData takes at most 1 MB per request. A value and its count take under 100 bytes even
# in the verbose query encoding (botocore sends CBOR, smaller), a datum's other fields ~300:
# 5,000 values and 1,000 datums stay well under the limit.
MAX_VALUES_PER_CALL = 5000
# Distinct (metric, second, value) entries held between two publishes. Counters aggregate to a
# handful per second; this only bites if something records far more distinct values than the
# app does (the worker publishes every batch of at most 10,000 records).
MAX_PENDING_VALUES = 50_000
HIGH_RESOLUTION = 1  # StorageResolution: per-second metrics, as a scaling demo needs

# The API publishes inside a request: a CloudWatch outage may cost that request at most about
# 1 s to connect + 3 s to answer, instead of botocore's 60 s timeouts and three attempts. One
# attempt: a failed publish is kept and tried again by this module (RETRY_AFTER_S), never lost.
CLIENT_CONFIG = Config(
    connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1, "mode": "standard"}
)
RETRY_AFTER_S = 2.0

Action = Callable[[], None]
Scheduler = Callable[[float, Action], None]


def start_daemon_timer(delay_s: float, action: Action) -> None:
    """Run `action` once, `delay_s` from now, on a daemon thread (never keeps a process alive)."""
    timer = threading.Timer(delay_s, action)
    timer.daemon = True
    timer.start()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, order=True)
class _Series:
    """What one datum describes: a metric during one second."""

    second: int  # Unix time, whole seconds
    name: str
    unit: str


Pending = dict[_Series, Counter[float]]


class CloudWatchMetrics(Metrics):
    def __init__(
        self,
        cloudwatch: Any,
        namespace: str,
        dimensions: Mapping[str, str],
        *,
        min_flush_interval_s: float = 0.0,
        max_pending_values: int = MAX_PENDING_VALUES,
        schedule: Scheduler = start_daemon_timer,
        wall_clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._namespace = namespace
        self._dimensions = [{"Name": name, "Value": value} for name, value in dimensions.items()]
        self._min_flush_interval_s = min_flush_interval_s
        self._max_pending_values = max_pending_values
        self._schedule = schedule
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        # The timer thread publishes while a later request may be recording: one lock for the
        # buffer and the publish bookkeeping, never held during a call to CloudWatch.
        self._lock = threading.Lock()
        self._pending: Pending = {}
        self._pending_values = 0
        self._dropped_samples = 0
        self._last_publish: float | None = None  # monotonic; None: nothing published yet
        self._timer_armed = False

    def add(self, name: str, value: float, unit: MetricUnit, at: datetime | None = None) -> None:
        moment = at if at is not None else self._wall_clock()
        series = _Series(math.floor(moment.timestamp()), name, unit)
        # Whole units (1 ms for latencies): finer is noise at this scale, and every distinct
        # value costs a slot in the datum.
        rounded = float(round(value))
        with self._lock:
            self._record(series, rounded, 1)

    def _record(self, series: _Series, value: float, count: int) -> bool:
        """Count `count` samples of `value` into the buffer (the lock held). A value new to the
        buffer takes a slot; with none left the samples are dropped (reported at the next
        publish) and the answer is False."""
        counts = self._pending.get(series)
        if counts is None or value not in counts:
            if self._pending_values >= self._max_pending_values:
                self._dropped_samples += count
                return False
            self._pending_values += 1
            if counts is None:
                counts = self._pending[series] = Counter()
        counts[value] += count
        return True

    def flush(self) -> None:
        self._publish_when_due()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_armed = False
        self._publish_when_due()

    def _publish_when_due(self) -> None:
        with self._lock:
            if not self._pending:
                return
            now = self._monotonic()
            wait_s = (
                0.0
                if self._last_publish is None
                else self._min_flush_interval_s - (now - self._last_publish)
            )
            if wait_s > 0:
                # Too soon after the last publish: the timer publishes this if no later
                # request does first.
                if not self._timer_armed:
                    self._timer_armed = True
                    self._schedule(wait_s, self._on_timer)
                return
            pending, dropped = self._pending, self._dropped_samples
            self._pending, self._pending_values, self._dropped_samples = {}, 0, 0
            self._last_publish = now
        if dropped:
            logger.warning("metrics buffer full: %d samples were dropped", dropped)
        self._publish(pending)

    def _publish(self, pending: Pending) -> None:
        chunks = list(_chunks(self._datums(pending)))
        for sent, chunk in enumerate(chunks):
            try:
                self._cloudwatch.put_metric_data(Namespace=self._namespace, MetricData=chunk)
            except Exception as e:
                # No error of the metrics sink (a botocore error, a refusal of the data) may
                # fail a request or a batch. CloudWatch is likely overloaded or down: the rest
                # of this publish waits for the next one rather than on it again now.
                unsent = [datum for rest in chunks[sent:] for datum in rest]
                kept = self._keep_for_later(unsent)
                logger.warning(
                    "PutMetricData to %s failed (%s: %s): %d datums kept for the next publish%s",
                    self._namespace,
                    type(e).__name__,
                    e,
                    len(unsent),
                    "" if kept else "; the buffer is full, some samples were dropped",
                )
                return

    def _keep_for_later(self, datums: list[dict[str, Any]]) -> bool:
        """Put unsent datums back into the buffer and arm the retry timer. False when the
        buffer had no room for all of them (counted as dropped)."""
        all_kept = True
        with self._lock:
            for datum in datums:
                series = _Series(
                    int(datum["Timestamp"].timestamp()), datum["MetricName"], datum["Unit"]
                )
                for value, count in zip(datum["Values"], datum["Counts"], strict=True):
                    all_kept = self._record(series, value, int(count)) and all_kept
            if not self._timer_armed:
                self._timer_armed = True
                self._schedule(RETRY_AFTER_S, self._on_timer)
        return all_kept

    def _datums(self, pending: Pending) -> list[dict[str, Any]]:
        datums = []
        for series in sorted(pending):
            values = sorted(pending[series].items())
            for start in range(0, len(values), MAX_VALUES_PER_DATUM):
                part = values[start : start + MAX_VALUES_PER_DATUM]
                datums.append(
                    {
                        "MetricName": series.name,
                        "Dimensions": self._dimensions,
                        "Timestamp": datetime.fromtimestamp(series.second, UTC),
                        "Unit": series.unit,
                        "StorageResolution": HIGH_RESOLUTION,
                        "Values": [value for value, _ in part],
                        "Counts": [float(count) for _, count in part],
                    }
                )
        return datums


def _chunks(datums: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The datums in as few PutMetricData calls as its limits allow."""
    chunk: list[dict[str, Any]] = []
    values = 0
    for datum in datums:
        size = len(datum["Values"])
        if chunk and (len(chunk) == MAX_DATUMS_PER_CALL or values + size > MAX_VALUES_PER_CALL):
            yield chunk
            chunk, values = [], 0
        chunk.append(datum)
        values += size
    if chunk:
        yield chunk
