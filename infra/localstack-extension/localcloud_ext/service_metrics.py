"""AWS service metrics LocalStack's open edition lacks, published at 1-second resolution.

AWS/Lambda (dimension FunctionName): Invocations, Errors, Throttles, Duration, ConcurrentExecutions.
AWS/SQS (dimension QueueName): ApproximateNumberOfMessagesVisible, ...NotVisible,
ApproximateAgeOfOldestMessage, NumberOfMessagesSent, NumberOfMessagesDeleted.

Request threads only bump in-memory counters (`metrics_aggregation.ServiceMetrics`); one daemon
thread closes each whole second and writes its datums into LocalStack's CloudWatch, timestamped
with that second, StorageResolution=1. Other extension code adds gauges with `register_gauge`.

Seams, each checked before it is patched (tests/integration/test_service_metrics_seams.py):
- `LambdaVersionManager.invoke`: every invoke (sync, async and event-source) passes here, and the
  concurrency lease that raises TooManyRequestsException is taken inside it -> Invocations,
  Errors, Throttles.
- `ExecutionEnvironment.invoke`: the function handling one event -> Duration and in-flight
  executions. Counted here rather than in the version manager so that a throttled attempt (which
  holds no lease) never shows as concurrency, and Duration, as on AWS, excludes the cold start.
- `SqsProvider._init_cloudwatch_metrics_reporting`: the provider gets a dispatcher that only
  counts, instead of LocalStack's thread pool that publishes one PutMetricData per message, and
  its periodic `CloudwatchPublishWorker` never starts (it would publish the queue depths twice).
- `CloudwatchDatabase._get_ordered_dimensions_with_separator`: LocalStack selects a dimension
  with `LIKE '%QueueName=tasks%'`, which also matches `tasks-dlq`; we end the value with its tab
  separator so that a query reads exactly its own series.
- `CloudwatchDatabase.__init__`: also indexes the metric tables by time, so that Period=1
  queries cost what their window holds, not the whole history, and puts the database in WAL
  mode (`metrics_database`), so that a thousand environments' PutMetricData keep up.
- `CloudwatchDatabase.get_metric_data_stat` and `CloudwatchProvider.get_metric_statistics`
  (one query per metric, percentiles): in `cloudwatch_queries`, which checks its own seams.
"""

from __future__ import annotations

import inspect
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from localstack.runtime import hooks

from localcloud_ext import metrics_database
from localcloud_ext.metrics_aggregation import (
    COUNT,
    SECONDS,
    Destination,
    PutMetricDataCall,
    Sample,
    Series,
    ServiceMetrics,
    batch_datums,
    queue_series,
)
from localcloud_ext.seams import SeamMoved, require_parameters

LOG = logging.getLogger(__name__)

METRICS = ServiceMetrics(time.time)

# Where datums go: "store" writes LocalStack's CloudWatch database in one transaction per call
# (measured 1.4 ms per 100 datums); "client" goes through PutMetricData on the internal client,
# whose provider opens a connection and commits per datum (~0.9 ms per datum). "store" falls back
# to "client" when the CloudWatch provider is not the default (v2) one.
SINK_VARIABLE = "LOCALCLOUD_SERVICE_METRICS_SINK"
# Publish this long after a second ends: recordings for it have all landed by then.
PUBLISH_DELAY_SECONDS = 0.05
STOP_TIMEOUT_SECONDS = 2.0


# --- the gauge registry (API used by other extension modules) ----------------------------------


def register_gauge(
    key: str,
    *,
    account_id: str,
    region: str,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    read: Callable[[], float],
    unit: str = "Count",
) -> None:
    """Publish `read()` once per second (its value for the second that just ended) until
    `unregister_gauge(key)`. A `read()` that raises is skipped for that second."""
    series = Series(
        Destination(account_id, region, namespace), metric, tuple(sorted(dimensions.items())), unit
    )
    METRICS.register_gauge(key, series, read)


def unregister_gauge(key: str) -> None:
    METRICS.unregister_gauge(key)


# --- seams: Lambda -------------------------------------------------------------------------------


@hooks.on_infra_start()  # type: ignore[untyped-decorator]  # LocalStack is untyped here
def count_lambda_invocations() -> None:
    from localstack.aws.api.lambda_ import TooManyRequestsException
    from localstack.services.lambda_.invocation.execution_environment import (
        ExecutionEnvironment,
    )
    from localstack.services.lambda_.invocation.version_manager import LambdaVersionManager
    from localstack.utils.patch import patch

    require_parameters(LambdaVersionManager.invoke, ["self", "invocation"])
    require_parameters(ExecutionEnvironment.invoke, ["self", "invocation"])

    @patch(LambdaVersionManager.invoke)  # type: ignore[untyped-decorator]
    def invoke(invoke: Any, self: LambdaVersionManager, *, invocation: Any) -> Any:
        function = self.function_version.id
        try:
            result = invoke(self, invocation=invocation)
        except TooManyRequestsException:
            METRICS.invocation_throttled(function.account, function.region, function.function_name)
            raise
        METRICS.invocation_completed(
            function.account, function.region, function.function_name, is_error=result.is_error
        )
        return result

    @patch(ExecutionEnvironment.invoke)  # type: ignore[untyped-decorator]
    def execute(execute: Any, self: ExecutionEnvironment, invocation: Any) -> Any:
        function = self.function_version.id
        METRICS.execution_started(function.account, function.region, function.function_name)
        started = time.perf_counter()
        try:
            return execute(self, invocation)
        finally:
            METRICS.execution_finished(
                function.account,
                function.region,
                function.function_name,
                (time.perf_counter() - started) * 1000,
            )


# --- seams: SQS ----------------------------------------------------------------------------------


class CountingSqsDispatcher:
    """Stands in for LocalStack's `CloudwatchDispatcher` (same methods): counts, never publishes."""

    def dispatch_metric_message_sent(self, queue: Any, message_body_size: int) -> None:
        METRICS.messages_sent(queue.account_id, queue.region, queue.name)

    def dispatch_metric_message_deleted(self, queue: Any, deleted: int = 1) -> None:
        METRICS.messages_deleted(queue.account_id, queue.region, queue.name, deleted)

    def dispatch_metric_received(self, queue: Any, received: int) -> None:
        """Not among the metrics we publish."""

    def shutdown(self) -> None:
        """Nothing runs in the background."""


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def count_sqs_messages() -> None:
    from localstack.services.sqs.provider import CloudwatchDispatcher, SqsProvider
    from localstack.utils.patch import patch

    require_parameters(SqsProvider._init_cloudwatch_metrics_reporting, ["self"])
    for method in (
        "dispatch_metric_message_sent",
        "dispatch_metric_message_deleted",
        "dispatch_metric_received",
        "shutdown",
    ):
        require_parameters(
            getattr(CloudwatchDispatcher, method),
            list(inspect.signature(getattr(CountingSqsDispatcher, method)).parameters),
        )

    @patch(SqsProvider._init_cloudwatch_metrics_reporting)  # type: ignore[untyped-decorator]
    def init_reporting(_init: Any, self: SqsProvider) -> None:
        # "disabled" keeps _start/_stop_cloudwatch_metrics_reporting away from the publish worker
        # (never created); the dispatcher is still called wherever it is set.
        self.cloudwatch_disabled = True
        self._cloudwatch_publish_worker = None
        self._cloudwatch_dispatcher = CountingSqsDispatcher()

    METRICS.add_sampler(sample_sqs_queues)


def sample_sqs_queues() -> Iterator[Sample]:
    """Depth and oldest message of every queue in every account and region, read without the
    queue's lock (never delays SQS); a queue changing under the read is skipped this second."""
    from localstack.services.sqs.models import sqs_stores

    now = time.time()
    for account_id, region, store in list(sqs_stores.iter_stores()):
        for queue in list(store.queues.values()):
            try:
                visible = queue.approximate_number_of_messages
                not_visible = queue.approximate_number_of_messages_not_visible
                oldest = _oldest_message_created(queue)
            except (RuntimeError, IndexError):  # mutated while we read it
                LOG.debug("queue %s changed while sampled; skipped", queue.name)
                continue
            age = 0 if oldest is None else max(0, int(now - oldest))
            for metric, value, unit in (
                ("ApproximateNumberOfMessagesVisible", visible, COUNT),
                ("ApproximateNumberOfMessagesNotVisible", not_visible, COUNT),
                ("ApproximateAgeOfOldestMessage", age, SECONDS),
            ):
                yield Sample(queue_series(account_id, region, queue.name, metric, unit), value)


def _oldest_message_created(queue: Any) -> float | None:
    """Creation time of the oldest visible or in-flight message. Visible messages sit in heaps
    ordered by creation time (one per queue, or one per message group in a FIFO queue)."""
    candidates = [message.created for message in list(queue.inflight)]
    if hasattr(queue, "message_groups"):
        heaps = [group.messages for group in list(queue.message_groups.values())]
    else:
        heaps = [queue.visible.queue]
    candidates += [heap[0].created for heap in heaps if heap]
    return min(candidates, default=None)


# --- seam: CloudWatch dimension match ------------------------------------------------------------

DIMENSION_SEPARATOR = "\t"


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def match_metric_dimensions_exactly() -> None:
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.utils.patch import patch

    dimensions_key = CloudwatchDatabase._get_ordered_dimensions_with_separator
    require_parameters(dimensions_key, ["self", "dims", "for_search"])
    stored = dimensions_key(
        CloudwatchDatabase.__new__(CloudwatchDatabase), [{"Name": "QueueName", "Value": "q"}]
    )
    if stored != f"QueueName=q{DIMENSION_SEPARATOR}":
        raise SeamMoved(f"CloudWatch stores dimensions as {stored!r}, expected 'QueueName=q\\t'")

    @patch(CloudwatchDatabase._get_ordered_dimensions_with_separator)  # type: ignore[untyped-decorator]
    def ordered_dimensions(
        original: Any, self: Any, dims: list[dict[str, str]] | None, for_search: bool = False
    ) -> str | None:
        if not for_search or not dims:
            return original(self, dims, for_search)  # type: ignore[no-any-return]
        # each stored "Name=Value" ends with the separator: include it, so that the value ends
        return "".join(
            f"%{d.get('Name')}={d.get('Value', '')}{DIMENSION_SEPARATOR}%"
            for d in sorted(dims, key=lambda d: d["Name"])
        )


TIME_INDEXES = {
    "localcloud_single_metrics_by_time": "SINGLE_METRICS",
    "localcloud_aggregated_metrics_by_time": "AGGREGATED_METRICS",
}


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def index_metrics_by_time() -> None:
    """GetMetricData runs one query per Period, each reading every row of the metric since start
    (LocalStack indexes only metric name and namespace). At Period=1 after an hour of 10 queues'
    gauges a 5-minute window took 5.2 s; with the metric's rows indexed by time, 0.3 s."""
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.utils.patch import patch

    require_parameters(CloudwatchDatabase.__init__, ["self"])
    for table in TIME_INDEXES.values():
        if table not in (
            CloudwatchDatabase.TABLE_SINGLE_METRICS,
            CloudwatchDatabase.TABLE_AGGREGATED_METRICS,
        ):
            raise SeamMoved(f"CloudWatch's metrics tables are no longer named {table}")

    @patch(CloudwatchDatabase.__init__)  # type: ignore[untyped-decorator]
    def init(init: Any, self: CloudwatchDatabase) -> None:
        init(self)  # creates the tables unless the database exists
        metrics_database.use_write_ahead_log(self)
        with self.DATABASE_LOCK, sqlite3.connect(self.METRICS_DB) as connection:
            for name, table in TIME_INDEXES.items():
                connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table}"
                    " (namespace, metric_name, timestamp)"
                )
        connection.close()


# --- the publisher -------------------------------------------------------------------------------


class MetricsSink(Protocol):
    def put(self, call: PutMetricDataCall) -> None: ...


class InternalClientSink:
    """PutMetricData through LocalStack's internal client (in memory with IN_MEMORY_CLIENT=1)."""

    def put(self, call: PutMetricDataCall) -> None:
        from localstack.aws.connect import connect_to

        destination = call.destination
        client = connect_to(
            aws_access_key_id=destination.account_id, region_name=destination.region
        ).cloudwatch
        client.put_metric_data(Namespace=destination.namespace, MetricData=call.datums)


class CloudwatchStoreSink:
    """Rows straight into the default (v2) CloudWatch provider's database, one transaction per
    call, in the shape its PutMetricData stores (the provider's own helper formats dimensions)."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def put(self, call: PutMetricDataCall) -> None:
        database = self._provider.cloudwatch_database  # replaced on a state reset: look it up
        single, aggregated = [], []
        for datum in call.datums:
            row = (
                call.destination.account_id,
                call.destination.region,
                datum["MetricName"],
                call.destination.namespace,
                int(datum["Timestamp"].timestamp()),
                database._get_ordered_dimensions_with_separator(list(datum["Dimensions"])),
                datum["Unit"],
                datum["StorageResolution"],
            )
            if "StatisticValues" in datum:
                stats = datum["StatisticValues"]
                aggregated.append(
                    (*row, stats["SampleCount"], stats["Sum"], stats["Minimum"], stats["Maximum"])
                )
            else:
                single.append((*row, datum["Value"]))
        metrics_database.insert_rows(database, single, aggregated)


def choose_sink() -> MetricsSink:
    """The store when the loaded CloudWatch provider is the default one, else the client."""
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.services.plugins import SERVICE_PLUGINS

    if os.environ.get(SINK_VARIABLE, "store") == "store":
        provider = SERVICE_PLUGINS.require("cloudwatch").lifecycle_hook
        if isinstance(getattr(provider, "cloudwatch_database", None), CloudwatchDatabase):
            return CloudwatchStoreSink(provider)
        LOG.info("CloudWatch provider %s has no metrics database: using PutMetricData", provider)
    return InternalClientSink()


class Publisher:
    """One daemon thread: just after every whole second, collect and publish."""

    def __init__(self, metrics: ServiceMetrics, make_sink: Callable[[], MetricsSink]) -> None:
        self._metrics = metrics
        self._make_sink = make_sink
        self._sink: MetricsSink | None = None
        self._stop = threading.Event()
        self._failures = 0
        self._thread = threading.Thread(
            target=self._run, name="localcloud-service-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        while not self._stop.wait(1 - time.time() % 1 + PUBLISH_DELAY_SECONDS):
            try:
                self.publish_once()
            except Exception:  # a bad second must not end the metrics
                # warn once, not every second of a lasting failure (e.g. CloudWatch disabled)
                level = logging.WARNING if self._failures == 0 else logging.DEBUG
                LOG.log(level, "publishing service metrics failed", exc_info=True)
                self._failures += 1

    def publish_once(self) -> int:
        datums = self._metrics.collect()
        if not datums:
            return 0
        if self._sink is None:
            self._sink = self._make_sink()  # lazily: loads CloudWatch only once there is data
        for call in batch_datums(datums):
            self._sink.put(call)
        return len(datums)


_publisher: Publisher | None = None


@hooks.on_infra_ready()  # type: ignore[untyped-decorator]
def start_service_metrics_publisher() -> None:
    global _publisher
    if _publisher is None:
        _publisher = Publisher(METRICS, choose_sink)
        _publisher.start()


@hooks.on_infra_ready()  # type: ignore[untyped-decorator]
def start_database_metrics() -> None:
    """The RDS stand-in's and its proxy's connection gauges (database_metrics.py)."""
    from localstack.constants import DEFAULT_AWS_ACCOUNT_ID

    from localcloud_ext import database_metrics

    database_metrics.start(os.environ, register_gauge, DEFAULT_AWS_ACCOUNT_ID)


@hooks.on_infra_shutdown()  # type: ignore[untyped-decorator]
def stop_database_metrics() -> None:
    from localcloud_ext import database_metrics

    database_metrics.stop(unregister_gauge)


@hooks.on_infra_shutdown()  # type: ignore[untyped-decorator]
def stop_service_metrics_publisher() -> None:
    global _publisher
    if _publisher is not None:
        _publisher.stop()
        _publisher = None
