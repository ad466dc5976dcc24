"""Builds the app's objects once per execution environment, from the settings, on first use:
clients and the database connection are then reused by every later invocation in the same
environment. Tests assign their own objects to the attributes (they are cached properties)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from chalicelib.cloudwatch_metrics import CLIENT_CONFIG, CloudWatchMetrics
from chalicelib.cold_start import ColdStartRecorder
from chalicelib.dashboard import DashboardService
from chalicelib.emf_metrics import EmfMetrics
from chalicelib.ports import Metrics, ReceivedMessages, TaskQueue, TaskStore
from chalicelib.postgres_store import PostgresTaskStore, conninfo_from_secret, read_secret
from chalicelib.reconciler import Reconciler
from chalicelib.service import TaskService
from chalicelib.settings import MetricsSink, Settings
from chalicelib.sqs_queue import SqsReceivedMessages, SqsTaskQueue
from chalicelib.task_types import TaskRunner
from chalicelib.worker import Worker

# Metrics go out at most once a second per execution environment (see cloudwatch_metrics.py):
# the API records one task per POST /tasks, and the worker's one PutMetricData per batch cost
# more than the batch itself in the local cloud (drain of 3,000 echo tasks: ~450 tasks/s with
# a call per batch, ~630 with one a second). The price, on AWS: an environment frozen right
# after its last batch publishes that last second when it next runs, or never if retired.
METRICS_FLUSH_INTERVAL_S = 1.0
READ_CONFIG = Config(
    connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 2, "mode": "standard"}
)
# The API sends inside a request with a deadline (service.START_BUDGET_MS): a call that hangs
# must give up in seconds, not in botocore's 60 s, so that the request withdraws and answers.
SEND_CONFIG = Config(
    connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 2, "mode": "standard"}
)


class Dependencies:
    def __init__(self, log: Logger) -> None:
        self.log = log

    def prime(self) -> None:
        """Build the worker and what it uses (AWS clients, the store, metrics) without calling
        anything: SnapStart's before-snapshot hook, so restored environments share them. Opens
        no connection (the store connects, and the clients send, on first use)."""
        _ = self.worker

    def close_connections(self) -> None:
        """Close the database connection and the AWS clients' HTTP connections made so far
        (SnapStart's before-snapshot hook, chalicelib/snapstart.py); each reopens on first use."""
        built = self.__dict__  # cached properties already built
        if "store" in built:
            built["store"].close()
        for name in ("sqs", "cloudwatch"):
            if name in built:
                built[name].close()

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def boto3_session(self) -> boto3.session.Session:
        # Clients read the endpoint from the standard AWS_ENDPOINT_URL when it is set.
        return boto3.session.Session()

    def _client(self, service: str, config: Config | None = None) -> Any:
        return self.boto3_session.client(service, config=config)

    @cached_property
    def queue(self) -> TaskQueue:
        s = self.settings
        return SqsTaskQueue(self.sqs, s.task_queue_url, s.dead_letter_queue_url)

    @cached_property
    def received_messages(self) -> ReceivedMessages:
        s = self.settings
        return SqsReceivedMessages(self.sqs, s.task_queue_url, s.dead_letter_queue_url)

    @cached_property
    def sqs(self) -> Any:
        """One SQS client for the queue and the worker's received messages."""
        return self._client("sqs", SEND_CONFIG)

    @cached_property
    def store(self) -> TaskStore:
        secretsmanager = self._client("secretsmanager")

        def conninfo() -> str:
            return conninfo_from_secret(
                read_secret(secretsmanager, self.settings.database_secret_id),
                through=self.settings.database_proxy,
            )

        return PostgresTaskStore(conninfo, self.settings.stage)

    @cached_property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch", CLIENT_CONFIG)

    @cached_property
    def metrics(self) -> Metrics:
        # One per process: a function is either the API or the worker.
        return METRICS_SINKS[self.settings.metrics_sink](self)

    def _put_metric_data_metrics(self) -> Metrics:
        s = self.settings
        return CloudWatchMetrics(
            self.cloudwatch,
            s.metrics_namespace,
            s.metric_dimensions,
            min_flush_interval_s=METRICS_FLUSH_INTERVAL_S,
        )

    def _emf_metrics(self) -> Metrics:
        # No client: the lines go to stdout, and Lambda ships them to CloudWatch Logs.
        return EmfMetrics(self.settings.metrics_namespace, self.settings.metric_dimensions)

    @cached_property
    def cold_start(self) -> ColdStartRecorder:
        return ColdStartRecorder(lambda: self.metrics)

    @cached_property
    def dashboard(self) -> DashboardService:
        # The dashboard's reads answer a page that polls every 1-2 s: short timeouts, so a
        # slow CloudWatch costs one poll, not a pile of waiting requests.
        return DashboardService(
            self._client("cloudwatch", READ_CONFIG),
            self._client("lambda", READ_CONFIG),
            self._client("sqs", READ_CONFIG),
            self.queue,
            self.settings,
        )

    @cached_property
    def service(self) -> TaskService:
        return TaskService(self.queue, self.store, self.metrics)

    @cached_property
    def worker(self) -> Worker:
        return Worker(
            self.store,
            TaskRunner(),
            self.settings.max_receives,
            self.log,
            self.metrics,
            self.received_messages,
            self.settings.retry_backoff,
        )

    @cached_property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.store, self.queue, self.settings.retry_backoff)


# The stage's METRICS_SINK -> the adapter it builds: one entry per MetricsSink.
METRICS_SINKS: dict[MetricsSink, Callable[[Dependencies], Metrics]] = {
    MetricsSink.PUT_METRIC_DATA: Dependencies._put_metric_data_metrics,
    MetricsSink.EMF: Dependencies._emf_metrics,
}
