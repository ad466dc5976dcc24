"""GET /metrics: everything the dashboard shows, in one answer that stays cheap while the page
polls it every 1-2 s during a burst: one GetMetricData call for every series (only the seconds
that may have changed since this environment's last read: SeriesCache), the two queues'
depths (GetQueueAttributes), and the trigger's settings, read at most once per SETTINGS_TTL_S
per execution environment. The words (state, recommendations) come from scaling_state."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.dashboard_series import (
    SeriesCache,
    Sources,
    aligned_series,
    charts_json,
    metric_data_queries,
)
from chalicelib.errors import DependencyUnavailable, InvalidRequest
from chalicelib.ports import TaskQueue
from chalicelib.scaling_state import Observed, TriggerSettings, describe_state, recommend
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

PERIODS = (1, 5, 10, 30, 60)
MAX_MINUTES = 180  # CloudWatch keeps 1-second data for 3 hours
MAX_POINTS = 3600  # per series: 23 series stay well under GetMetricData's 100,800 datapoints
DEFAULT_MINUTES = 15
SETTINGS_TTL_S = 10.0  # a changed setting shows within this


@dataclass(frozen=True)
class MetricsWindow:
    minutes: int
    period: int

    @classmethod
    def parse(cls, query: Mapping[str, str] | None) -> MetricsWindow:
        """From the query string; a bad value is the client's mistake and names itself."""
        query = query or {}
        unknown = sorted(set(query) - {"minutes", "period"})
        if unknown:
            raise InvalidRequest(unknown[0], "unknown parameter (use minutes and period)")
        minutes = _int_parameter(query, "minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
        period = _int_parameter(query, "period", 1, 1, 60)
        if period not in PERIODS:
            raise InvalidRequest("period", f"must be one of {', '.join(map(str, PERIODS))} s")
        if minutes * 60 // period > MAX_POINTS:
            raise InvalidRequest(
                "minutes",
                f"{minutes} minutes at {period} s is {minutes * 60 // period} points per series;"
                f" at most {MAX_POINTS}: ask for fewer minutes or a longer period",
            )
        return cls(minutes, period)


def _int_parameter(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() holds for '²', which int() refuses (a 500), and for
    # '١', which int() reads as 1.
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidRequest(name, f"must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


class DashboardService:
    def __init__(
        self,
        cloudwatch: Any,
        lambda_client: Any,
        sqs: Any,
        queue: TaskQueue,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        settings_ttl_s: float = SETTINGS_TTL_S,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._lambda = lambda_client
        self._sqs = sqs
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._settings_ttl_s = settings_ttl_s
        self._lock = threading.Lock()
        self._trigger: tuple[float, TriggerSettings] | None = None
        self._series = SeriesCache()
        self._series_lock = threading.Lock()

    def metrics(self, window: MetricsWindow) -> dict[str, Any]:
        now = self._clock()
        period = window.period
        end = math.floor(now / period) * period  # the last whole period
        start = end - window.minutes * 60
        trigger = self.trigger_settings()
        s = self._settings
        sources = Sources.of(
            worker_function=s.worker_function_name,
            task_queue=s.task_queue_name,
            dead_letter_queue=s.dead_letter_queue_name,
            app_namespace=s.metrics_namespace,
            app_dimensions=s.metric_dimensions,
            mapping_namespace=s.mapping_metrics_namespace,
            mapping_uuid=trigger.event_source_mapping,
            api_function=s.api_function_name,
            database_instance=s.database_instance,
            database_proxy=s.database_proxy_name,
        )
        queries = metric_data_queries(sources, period)
        key = json.dumps(queries, sort_keys=True)
        # One read at a time per environment: a merge must build on the read it started from
        # (Lambda serves one request at a time per environment anyway).
        with self._series_lock:
            read_from = self._series.read_from(key, start, end, period)
            results = self._metric_data(queries, read_from, end)
            _, fresh = aligned_series(results, read_from, end, period)
            series = self._series.merge(key, start, end, period, read_from, fresh)
        times = list(range(start, end, period))
        queue, dead_letters = self._queue.depth(), self._queue.dead_letter_depth()
        observed = Observed(period, series, queue, dead_letters)
        return {
            "period": period,
            "start": start,
            "end": end,
            "generated_at": round(now, 3),
            "t": times,
            "series": series,
            "charts": charts_json(),
            "queue": queue.to_json(),
            "dead_letter_queue": dead_letters.to_json(),
            "settings": trigger.to_json(),
            "state": describe_state(observed, trigger).to_json(),
            "recommendations": [r.to_json() for r in recommend(observed, trigger)],
        }

    def _metric_data(
        self, queries: list[dict[str, Any]], start: int, end: int
    ) -> list[dict[str, Any]]:
        """Every result of one GetMetricData request (its pages, if CloudWatch splits it)."""
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
            "ScanBy": "TimestampAscending",
        }
        results: list[dict[str, Any]] = []
        try:
            while True:
                page = self._cloudwatch.get_metric_data(**request)
                results.extend(page["MetricDataResults"])
                if not page.get("NextToken"):
                    return results
                request["NextToken"] = page["NextToken"]
        except (BotoCoreError, ClientError) as e:
            raise DependencyUnavailable(f"CloudWatch GetMetricData failed: {e}") from e

    def trigger_settings(self) -> TriggerSettings:
        """The trigger's settings, read again once they are SETTINGS_TTL_S old."""
        with self._lock:
            cached = self._trigger
        if cached is not None and self._clock() - cached[0] < self._settings_ttl_s:
            return cached[1]
        fresh = self._read_trigger_settings()
        with self._lock:
            self._trigger = (self._clock(), fresh)
        return fresh

    def _read_trigger_settings(self) -> TriggerSettings:
        s = self._settings
        try:
            mappings = self._lambda.list_event_source_mappings(FunctionName=s.worker_function_name)[
                "EventSourceMappings"
            ]
            listed = next(
                (m for m in mappings if m["EventSourceArn"].endswith(f":{s.task_queue_name}")),
                None,
            )
            # Read the mapping itself: LocalStack's list answers a stale State ("Disabled" for
            # an enabled mapping); GetEventSourceMapping is right on both.
            mapping: dict[str, Any] = (
                {} if listed is None else self._lambda.get_event_source_mapping(UUID=listed["UUID"])
            )
            concurrency = self._lambda.get_function_concurrency(FunctionName=s.worker_function_name)
            queue = self._sqs.get_queue_attributes(
                QueueUrl=s.task_queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            )["Attributes"]
        except (BotoCoreError, ClientError) as e:
            raise DependencyUnavailable(f"reading the trigger's settings failed: {e}") from e
        redrive = json.loads(queue.get("RedrivePolicy") or "{}")
        return TriggerSettings(
            worker_function=s.worker_function_name,
            event_source_mapping=mapping.get("UUID"),
            mapping_state=mapping.get("State"),
            batch_size=mapping.get("BatchSize"),
            batching_window_seconds=mapping.get("MaximumBatchingWindowInSeconds"),
            maximum_concurrency=mapping.get("ScalingConfig", {}).get("MaximumConcurrency"),
            reserved_concurrency=concurrency.get("ReservedConcurrentExecutions"),
            visibility_timeout_seconds=_int_or_none(queue.get("VisibilityTimeout")),
            max_receive_count=_int_or_none(redrive.get("maxReceiveCount")),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
