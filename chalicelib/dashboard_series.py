"""What the dashboard plots: one entry per series in SERIES (its chart, label, unit and the
CloudWatch metric behind it), and the pure code that turns them into one GetMetricData call and
its answer into aligned arrays. A new series is one entry here; the page builds its charts from
CHARTS and the `charts` part of the answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from chalicelib.ports import (
    COLD_STARTS,
    END_TO_END_LATENCY,
    INIT_DURATION,
    TASKS_ACCEPTED,
    TASKS_FAILED,
    TASKS_PROCESSED,
    TASKS_RETRIED,
)


class Source(Enum):
    """Whose metric it is; resolved to a namespace and dimensions by `Sources`."""

    WORKER = "worker"  # AWS/Lambda, the worker function
    TASK_QUEUE = "task_queue"  # AWS/SQS, the task queue
    DEAD_LETTER_QUEUE = "dead_letter_queue"  # AWS/SQS, its dead-letter queue
    APP = "app"  # the app's own metrics (service and stage)
    MAPPING = "mapping"  # the SQS trigger's gauges, where the platform publishes them
    API = "api"  # AWS/Lambda, the API's function
    DATABASE = "database"  # AWS/RDS, the database instance
    DATABASE_PROXY = "database_proxy"  # AWS/RDS, the RDS Proxy in front of it, if any


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    limit_setting: str | None = None  # a setting drawn as a dashed line
    limit_label: str | None = None


@dataclass(frozen=True)
class Series:
    key: str
    chart: str
    label: str
    unit: str
    source: Source
    metric: str
    stat: str
    per_second: bool = False  # a count per period, answered per second
    axis: Literal["left", "right"] = "left"


CHARTS = (
    Chart("queue", "Queue depth"),
    Chart("concurrency", "Concurrency", "maximum_concurrency", "MaximumConcurrency"),
    Chart("throughput", "Throughput"),
    Chart("latency", "End-to-end latency"),
    Chart("errors", "Errors, retries, throttles, dead letters"),
    Chart("cold_starts", "Cold starts"),
    Chart("database", "Database connections"),
)

_LATENCY = [
    Series(f"latency_{p}", "latency", p, "ms", Source.APP, END_TO_END_LATENCY, p)
    for p in ("p50", "p95", "p99")
]
SERIES: tuple[Series, ...] = (
    Series("queue_visible", "queue", "visible", "messages", Source.TASK_QUEUE,
           "ApproximateNumberOfMessagesVisible", "Maximum"),
    Series("queue_in_flight", "queue", "in flight", "messages", Source.TASK_QUEUE,
           "ApproximateNumberOfMessagesNotVisible", "Maximum"),
    Series("oldest_message_age", "queue", "oldest message age", "s", Source.TASK_QUEUE,
           "ApproximateAgeOfOldestMessage", "Maximum", axis="right"),
    Series("concurrent_executions", "concurrency", "worker concurrent executions", "executions",
           Source.WORKER, "ConcurrentExecutions", "Maximum"),
    Series("api_concurrent_executions", "concurrency", "API concurrent executions",
           "executions", Source.API, "ConcurrentExecutions", "Maximum"),
    Series("concurrent_batches", "concurrency", "concurrent batches", "batches", Source.MAPPING,
           "ConcurrentBatches", "Maximum"),
    Series("scaling_target", "concurrency", "scaling target", "batches", Source.MAPPING,
           "ScalingTarget", "Maximum"),
    Series("accepted_per_s", "throughput", "accepted", "tasks/s", Source.APP, TASKS_ACCEPTED,
           "Sum", per_second=True),
    Series("completed_per_s", "throughput", "completed", "tasks/s", Source.APP,
           TASKS_PROCESSED, "Sum", per_second=True),
    *_LATENCY,
    Series("errors_per_s", "errors", "worker errors", "per s", Source.WORKER, "Errors", "Sum",
           per_second=True),
    Series("retried_per_s", "errors", "tasks retried", "per s", Source.APP, TASKS_RETRIED,
           "Sum", per_second=True),
    Series("failed_per_s", "errors", "tasks failed", "per s", Source.APP, TASKS_FAILED, "Sum",
           per_second=True),
    Series("throttles_per_s", "errors", "throttles", "per s", Source.WORKER, "Throttles", "Sum",
           per_second=True),
    Series("api_throttles_per_s", "errors", "API throttles", "per s", Source.API, "Throttles",
           "Sum", per_second=True),
    Series("dlq_visible", "errors", "dead-letter queue", "messages", Source.DEAD_LETTER_QUEUE,
           "ApproximateNumberOfMessagesVisible", "Maximum", axis="right"),
    Series("cold_starts", "cold_starts", "cold starts", "starts", Source.APP, COLD_STARTS,
           "Sum"),
    Series("init_duration_ms", "cold_starts", "init duration (avg)", "ms", Source.APP,
           INIT_DURATION, "Average", axis="right"),
    # RDS publishes the server side's count; RDS Proxy its clients' and its own to the database.
    Series("database_connections", "database", "database (server side)", "connections",
           Source.DATABASE, "DatabaseConnections", "Maximum"),
    Series("proxy_client_connections", "database", "clients of the proxy", "connections",
           Source.DATABASE_PROXY, "ClientConnections", "Maximum"),
    Series("proxy_database_connections", "database", "proxy to database", "connections",
           Source.DATABASE_PROXY, "DatabaseConnections", "Maximum"),
)  # fmt: skip


@dataclass(frozen=True)
class Sources:
    """Where each Source's metrics are: namespace and dimensions. A source set to None has no
    metrics on this platform; its series are answered as all nulls."""

    namespaces: Mapping[Source, tuple[str, Mapping[str, str]] | None]

    @classmethod
    def of(
        cls,
        *,
        worker_function: str,
        task_queue: str,
        dead_letter_queue: str,
        app_namespace: str,
        app_dimensions: Mapping[str, str],
        mapping_namespace: str,
        mapping_uuid: str | None,
        api_function: str = "",
        database_instance: str = "",
        database_proxy: str = "",
    ) -> Sources:
        """An empty name (or namespace) means that source has no metrics here."""
        mapping = (
            (mapping_namespace, {"EventSourceMappingUUID": mapping_uuid})
            if mapping_namespace and mapping_uuid
            else None
        )
        return cls(
            {
                Source.WORKER: ("AWS/Lambda", {"FunctionName": worker_function}),
                Source.TASK_QUEUE: ("AWS/SQS", {"QueueName": task_queue}),
                Source.DEAD_LETTER_QUEUE: ("AWS/SQS", {"QueueName": dead_letter_queue}),
                Source.APP: (app_namespace, app_dimensions),
                Source.MAPPING: mapping,
                Source.API: _named("AWS/Lambda", "FunctionName", api_function),
                Source.DATABASE: _named("AWS/RDS", "DBInstanceIdentifier", database_instance),
                Source.DATABASE_PROXY: _named("AWS/RDS", "ProxyName", database_proxy),
            }
        )


def _named(namespace: str, dimension: str, name: str) -> tuple[str, Mapping[str, str]] | None:
    return (namespace, {dimension: name}) if name else None


def metric_data_queries(
    sources: Sources, period: int, series: Sequence[Series] = SERIES
) -> list[dict[str, Any]]:
    """One MetricDataQuery per series that has a source here; its Id is the series' index."""
    queries = []
    for index, s in enumerate(series):
        where = sources.namespaces.get(s.source)
        if where is None:
            continue
        namespace, dimensions = where
        queries.append(
            {
                "Id": f"s{index}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": s.metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": period,
                    "Stat": s.stat,
                },
                "ReturnData": True,
            }
        )
    return queries


def aligned_series(
    results: Iterable[Mapping[str, Any]],
    start: int,
    end: int,
    period: int,
    series: Sequence[Series] = SERIES,
) -> tuple[list[int], dict[str, list[float | None]]]:
    """The buckets [start, end) one period apart, and every series as one value per bucket
    (None where CloudWatch has no datapoint). `results` are GetMetricData's MetricDataResults,
    from any number of pages."""
    times = list(range(start, end, period))
    index_of = {t: i for i, t in enumerate(times)}
    values: dict[str, list[float | None]] = {s.key: [None] * len(times) for s in series}
    for result in results:
        s = series[int(result["Id"][1:])]
        row = values[s.key]
        for moment, value in zip(result["Timestamps"], result["Values"], strict=True):
            slot = index_of.get(int(moment.timestamp()))
            if slot is not None:
                row[slot] = _rounded(value / period if s.per_second else value)
    return times, values


def _rounded(value: float) -> float:
    """Three significant decimals: the page needs no more, and the answer stays compact."""
    return round(value, 3)


def charts_json(series: Sequence[Series] = SERIES) -> list[dict[str, Any]]:
    """The `charts` part of the answer: what the page draws, in order."""
    charts = []
    for chart in CHARTS:
        entry: dict[str, Any] = {
            "id": chart.id,
            "title": chart.title,
            "series": [
                {"key": s.key, "label": s.label, "unit": s.unit}
                | ({"axis": s.axis} if s.axis != "left" else {})
                for s in series
                if s.chart == chart.id
            ],
        }
        if chart.limit_setting:
            entry["limit"] = {"label": chart.limit_label, "setting": chart.limit_setting}
        charts.append(entry)
    return charts


# A datapoint is taken as final once it is this old: the app publishes its metrics within about
# a second of the event (cloudwatch_metrics.py), the platform's gauges within a second.
LATE_DATA_SECONDS = 10


@dataclass(frozen=True)
class _Read:
    key: str
    start: int
    end: int
    period: int
    series: dict[str, list[float | None]]


class SeriesCache:
    """What an execution environment read last, so that the page's next poll (the same window,
    moved on a few seconds) reads from CloudWatch only the seconds that may still change: the
    last LATE_DATA_SECONDS of the previous read and what is new. A poll of a minute of 1-second
    data then reads 12 s instead of 60, and GetMetricData's cost follows what it reads."""

    def __init__(self, late_seconds: int = LATE_DATA_SECONDS) -> None:
        self._late_seconds = late_seconds
        self._last: _Read | None = None

    def read_from(self, key: str, start: int, end: int, period: int) -> int:
        """Where a read of [start, end) must begin: `start`, unless the last read covers it."""
        last = self._last
        if (
            last is None
            or (last.key, last.period) != (key, period)
            or not last.start <= start < last.end <= end
        ):
            return start
        return max(start, start + (last.end - self._late_seconds - start) // period * period)

    def merge(
        self,
        key: str,
        start: int,
        end: int,
        period: int,
        read_from: int,
        fresh: Mapping[str, list[float | None]],
    ) -> dict[str, list[float | None]]:
        """The series of [start, end): the last read's values before `read_from`, `fresh`
        (aligned from `read_from`) after; kept for the next poll."""
        kept = (read_from - start) // period
        series: dict[str, list[float | None]] = {}
        for name, values in fresh.items():
            earlier: list[float | None] = []
            if kept and self._last is not None:
                offset = (start - self._last.start) // period
                earlier = self._last.series[name][offset : offset + kept]
            series[name] = earlier + list(values)
        self._last = _Read(key, start, end, period, series)
        return series
