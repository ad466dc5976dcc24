"""What the burst reads from the local cloud: the deployed app's coordinates (endpoints.json),
the tasks' rows (PostgreSQL), queue depths (SQS), the trigger's MaximumConcurrency (Lambda)
and, when something publishes them, per-second metrics (CloudWatch)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg.rows import dict_row

from burst.analysis import TaskRow
from burst.errors import BurstError
from burst.sender import Clock
from deployment import database as app_database
from localcloud.aws import client_for_running
from localcloud.settings import EVENT_SOURCE_MAPPING_METRICS_NAMESPACE
from scaling_model.costs import FunctionShape

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[dict[str, Any]]
ROW_COLUMNS = (
    "id, status, idempotency_key, accepted_at, started_at, finished_at, worker_request_id, attempts"
)
NOT_DEPLOYED_FIX = "run scripts/demo, or scripts/localcloud up && scripts/deploy"


@dataclass(frozen=True)
class Target:
    """The deployed app a burst loads, and the local cloud it runs on (endpoints.json)."""

    running: Mapping[str, Any]
    api_url: str
    task_queue_url: str
    dead_letter_queue_url: str
    worker_function: str
    event_source_mapping: str
    dashboard_bucket: str | None = None  # where the report goes beside the dashboard's site
    dashboard_url: str | None = None
    # Sent as x-api-key to the write routes; None where the API asks for none.
    api_key: str | None = field(default=None, repr=False)
    api_function: str | None = None  # the REST API's function, for the run's cost

    @classmethod
    def from_endpoints(cls, running: Mapping[str, Any], where: str) -> Target:
        """From a parsed endpoints.json (`where`: its path, for the message)."""
        if "localstack" not in running or "postgres" not in running:
            raise BurstError(f"the local cloud is not up ({where} is missing): {NOT_DEPLOYED_FIX}")
        if "api" not in running:
            raise BurstError(
                f"the app is not deployed to the local cloud ({where} has no api section): "
                f"{NOT_DEPLOYED_FIX}"
            )
        api = running["api"]
        return cls(
            running=running,
            api_url=api["url"],
            task_queue_url=api["outputs"]["TaskQueueUrl"],
            dead_letter_queue_url=api["outputs"]["DeadLetterQueueUrl"],
            worker_function=api["worker_function"],
            event_source_mapping=api["event_source_mapping"],
            api_function=api.get("api_function"),
            dashboard_bucket=api["outputs"].get("DashboardBucketName"),
            dashboard_url=api.get("dashboard_url"),
            api_key=api.get("api_key"),
        )

    def client(self, service: str) -> Any:
        return client_for_running(self.running, service)

    def to_json(self) -> dict[str, str]:
        return {
            "api_url": self.api_url,
            "task_queue_url": self.task_queue_url,
            "dead_letter_queue_url": self.dead_letter_queue_url,
            "worker_function": self.worker_function,
            "event_source_mapping": self.event_source_mapping,
        }


# --- PostgreSQL -----------------------------------------------------------------------------


@contextmanager
def database(target: Target) -> Iterator[Connection]:
    with psycopg.connect(
        app_database.conninfo(target.running), autocommit=True, row_factory=dict_row
    ) as connection:
        yield connection


def statuses(connection: Connection, ids: Sequence[str]) -> dict[str, int]:
    """How many of the tasks `ids` are in each status (a task without a row is not counted)."""
    rows = connection.execute(
        "SELECT status, count(*) AS n FROM tasks WHERE id = ANY(%s::uuid[]) GROUP BY status",
        (list(ids),),
    ).fetchall()
    return {row["status"]: int(row["n"]) for row in rows}


def run_rows(connection: Connection, ids: Sequence[str], key_prefix: str) -> list[TaskRow]:
    """The rows of the accepted ids, and every row carrying the run's idempotency key prefix
    (found even when no answer named its id)."""
    rows = connection.execute(
        f"SELECT {ROW_COLUMNS} FROM tasks "
        "WHERE id = ANY(%s::uuid[]) OR starts_with(idempotency_key, %s)",
        (list(ids), key_prefix),
    ).fetchall()
    return [TaskRow.from_db(row) for row in rows]


def wait_for_drain(
    connection: Connection,
    ids: Sequence[str],
    seconds: float,
    clock: Clock,
    on_poll: Callable[[dict[str, int]], None] | None = None,
    poll_seconds: float = 1.0,
) -> tuple[dict[str, int], bool]:
    """Poll the tasks' statuses once per `poll_seconds` until every one is done or failed, or
    `seconds` have passed. Returns the last counts and whether all were final."""
    deadline = clock.now() + seconds
    while True:
        counts = statuses(connection, ids)
        if on_poll is not None:
            on_poll(counts)
        final = counts.get("done", 0) + counts.get("failed", 0)
        if final >= len(ids):
            return counts, True
        if clock.now() >= deadline:
            return counts, False
        clock.sleep(min(poll_seconds, max(0.0, deadline - clock.now())))


# --- SQS ------------------------------------------------------------------------------------


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS approximates them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def dead_letter_count(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


class QueueSampler:
    """Reads the task queue's depth once per `period` on a thread of its own, from start() to
    stop(): one cheap call per second, so sampling does not load what it measures."""

    def __init__(
        self, read: Callable[[], tuple[int, int]], clock: Clock, period: float = 1.0
    ) -> None:
        self._read = read
        self._clock = clock
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="burst-queue-sampler", daemon=True)
        self.samples: list[tuple[float, int, int]] = []  # (clock reading, visible, in flight)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            taken = self._clock.now()
            try:
                visible, in_flight = self._read()
            except (BotoCoreError, ClientError) as e:
                # One missed second shows as a gap in the timeline, not a failed burst.
                self.failures += 1
                logger.debug("queue depth not read: %s", e)
            else:
                self.samples.append((taken, visible, in_flight))
            self._stop.wait(max(0.0, self._period - (self._clock.now() - taken)))


# --- Lambda and CloudWatch --------------------------------------------------------------------


def maximum_concurrency(lambda_client: Any, mapping_uuid: str) -> int | None:
    """The SQS trigger's ScalingConfig.MaximumConcurrency; None when it has none or the mapping
    cannot be read (the chart then draws no limit line)."""
    try:
        mapping = lambda_client.get_event_source_mapping(UUID=mapping_uuid)
    except (BotoCoreError, ClientError) as e:
        logger.warning("event source mapping %s not read: %s", mapping_uuid, e)
        return None
    value = mapping.get("ScalingConfig", {}).get("MaximumConcurrency")
    return int(value) if value is not None else None


def function_shape(lambda_client: Any, name: str | None) -> FunctionShape | None:
    """The function's memory, architecture and SnapStart, for the run's cost; None when it
    cannot be read (the report then has no cost)."""
    if name is None:
        return None
    try:
        return FunctionShape.from_configuration(
            lambda_client.get_function_configuration(FunctionName=name)
        )
    except (BotoCoreError, ClientError, KeyError) as e:
        logger.warning("function %s not read, the report has no cost: %s", name, e)
        return None


# Optional per-second series: published by the local cloud's metrics, when they exist.
# name in the report -> (namespace, metric, dimension name, which Target attribute names it)
CLOUDWATCH_SERIES = {
    "lambda_concurrent_executions": (
        "AWS/Lambda",
        "ConcurrentExecutions",
        "FunctionName",
        "worker_function",
    ),
    "esm_concurrent_batches": (
        EVENT_SOURCE_MAPPING_METRICS_NAMESPACE,
        "ConcurrentBatches",
        "EventSourceMappingUUID",
        "event_source_mapping",
    ),
}


def cloudwatch_series(
    cloudwatch: Any, target: Target, start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, float]]]:
    """The series of CLOUDWATCH_SERIES with datapoints between `start` and `end` (Maximum per
    1-second period). A series without datapoints, or CloudWatch not answering, is left out:
    these metrics are optional."""
    queries = [
        {
            "Id": f"m{index}",
            "Label": name,
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": metric,
                    "Dimensions": [{"Name": dimension, "Value": getattr(target, attribute)}],
                },
                "Period": 1,
                "Stat": "Maximum",
            },
        }
        for index, (name, (namespace, metric, dimension, attribute)) in enumerate(
            CLOUDWATCH_SERIES.items()
        )
    ]
    names = {f"m{index}": name for index, name in enumerate(CLOUDWATCH_SERIES)}
    series: dict[str, list[tuple[datetime, float]]] = {}
    try:
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"
        )
        for page in pages:
            for result in page["MetricDataResults"]:
                points = list(zip(result["Timestamps"], result["Values"], strict=True))
                if points:
                    series.setdefault(names[result["Id"]], []).extend(points)
    except (BotoCoreError, ClientError) as e:
        logger.info("CloudWatch metrics not read (optional): %s", e)
        return {}
    return series
