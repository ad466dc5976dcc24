"""The metrics sink on AWS: Powertools Metrics' Embedded Metric Format (EMF), one JSON log line
per second of samples, which CloudWatch Logs turns into metrics. No API call, no client, no
VPC endpoint on the publishing path, and nothing held back across invocations.

The same metrics as the PutMetricData adapter (cloudwatch_metrics.py), so the dashboard's
GetMetricData queries find them unchanged: the same namespace, names, units (Count,
Milliseconds) and dimension set (`service`, `stage`: a metric is identified by its whole
dimension set, so EMF's `Dimensions` is exactly [["service", "stage"]]), 1-second storage
resolution, values rounded to whole units, and each sample stamped with the second it happened
in (EMF has one timestamp per line, so a flush writes one line per second it holds).

Flushed per invocation: every flush() (the end of a request or a batch) writes what was
recorded. Writing to stdout is cheap and Lambda's log delivery is the batching, so there is
nothing to gain from holding data back, and an environment frozen or retired after its last
invocation loses nothing (the PutMetricData adapter's price). EMF has no Values/Counts pairs:
every sample is one value (Powertools starts a new line at 100 values of a metric), so
SampleCount, Sum, Average and the percentiles come out as with PutMetricData.

Where the platform extracts EMF from the function's log lines (CloudWatch Logs on AWS, the local
cloud likewise), the stage chooses it with METRICS_SINK; elsewhere PutMetricData works."""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricResolution
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from chalicelib.ports import Metrics, MetricUnit

logger = logging.getLogger(__name__)

Sample = tuple[str, MetricUnit, float]  # name, unit, value


def utc_now() -> datetime:
    return datetime.now(UTC)


class EmfMetrics(Metrics):
    def __init__(
        self,
        namespace: str,
        dimensions: Mapping[str, str],
        *,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._namespace = namespace
        self._dimensions = dict(dimensions)
        self._wall_clock = wall_clock
        # The worker's records may be added from its threads; the lock guards the buffer only.
        self._lock = threading.Lock()
        self._pending: defaultdict[int, list[Sample]] = defaultdict(list)

    def add(self, name: str, value: float, unit: MetricUnit, at: datetime | None = None) -> None:
        moment = at if at is not None else self._wall_clock()
        # Whole units, as the PutMetricData adapter publishes them.
        sample = (name, unit, float(round(value)))
        with self._lock:
            self._pending[math.floor(moment.timestamp())].append(sample)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(list)
        for second in sorted(pending):
            try:
                self._write(second, pending[second])
            except Exception as e:
                # A metric is never worth a failed request or batch (the port's promise); an
                # error here is a sample Powertools' schema refuses, which no retry would fix.
                logger.warning(
                    "EMF metrics of second %d dropped (%s: %s)", second, type(e).__name__, e
                )

    def _write(self, second: int, samples: list[Sample]) -> None:
        """One EMF line (more past 100 values of a metric) for the samples of one second."""
        line = AmazonCloudWatchEMFProvider(
            namespace=self._namespace, default_dimensions=self._dimensions
        )
        line.set_timestamp(second * 1000)
        for name, unit, value in samples:
            line.add_metric(name=name, unit=unit, value=value, resolution=MetricResolution.High)
        line.flush_metrics()
