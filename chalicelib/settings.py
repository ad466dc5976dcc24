"""Every setting the functions read, in one place. Required variables fail fast with a message
naming the variable: the deploy (infra/deployment) sets most from the stack's outputs, the rest
are set per stage in .chalice/config.json; a missing one means a missing deploy step, never
something to paper over with a default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from chalicelib.errors import SettingMissing

# Written by the deploy from the CloudFormation stack's outputs.
TASK_QUEUE_NAME = "TASK_QUEUE_NAME"
TASK_QUEUE_URL = "TASK_QUEUE_URL"
DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
TASK_MAX_RECEIVES = "TASK_MAX_RECEIVES"
DATABASE_SECRET_ID = "DATABASE_SECRET_ID"
# Written by the deploy: the database proxy's endpoint (RDS Proxy's, `host:port`) the functions
# connect to with their secret's credentials, or empty to connect straight to the database at
# the secret's host and port (the deploy's --no-database-proxy).
DATABASE_PROXY_ENDPOINT = "DATABASE_PROXY_ENDPOINT"
DEAD_LETTER_QUEUE_NAME = "DEAD_LETTER_QUEUE_NAME"
APP_STAGE = "APP_STAGE"  # the metrics' `stage` dimension: stages share a namespace
# Written by the deploy, which knows how Chalice names the functions and where the site is.
WORKER_FUNCTION_NAME = "WORKER_FUNCTION_NAME"
DASHBOARD_ORIGIN = "DASHBOARD_ORIGIN"  # the dashboard site's origin: the only one CORS allows
# Where the SQS trigger's own concurrency gauges are published (ConcurrentBatches and
# ScalingTarget by EventSourceMappingUUID), or empty where the platform publishes none: AWS has
# no per-mapping concurrency metric, and the dashboard then shows the worker's
# ConcurrentExecutions alone.
EVENT_SOURCE_MAPPING_METRICS_NAMESPACE = "EVENT_SOURCE_MAPPING_METRICS_NAMESPACE"
# Written by the deploy, for the dashboard's charts of what shares the worker's limits: the API's
# function (its throttles when the worker takes the account's concurrency), the database
# instance and the RDS Proxy in front of it (their connections). Unset or empty: that chart's
# series are empty (a stage deployed without a proxy has no proxy metrics).
API_FUNCTION_NAME = "API_FUNCTION_NAME"
DATABASE_INSTANCE_IDENTIFIER = "DATABASE_INSTANCE_IDENTIFIER"
DATABASE_PROXY_NAME = "DATABASE_PROXY_NAME"
# Set in .chalice/config.json per stage: how long a failed record waits before its next receive,
# base x 2^(receives - 1) capped at max, instead of the queue's visibility timeout (minutes with
# AWS's advised 6 x the function's timeout). Base 0: no backoff, the visibility timeout.
TASK_RETRY_BACKOFF_BASE_SECONDS = "TASK_RETRY_BACKOFF_BASE_SECONDS"
TASK_RETRY_BACKOFF_MAX_SECONDS = "TASK_RETRY_BACKOFF_MAX_SECONDS"
# Set in .chalice/config.json per stage: how the SQS trigger batches and scales.
WORKER_BATCH_SIZE = "WORKER_BATCH_SIZE"
WORKER_BATCHING_WINDOW_SECONDS = "WORKER_BATCHING_WINDOW_SECONDS"
WORKER_MAX_CONCURRENCY = "WORKER_MAX_CONCURRENCY"
# Set in .chalice/config.json per stage; Powertools' standard names (its Logger reads the second).
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
# Set in .chalice/config.json per stage: how the app's metrics reach CloudWatch (MetricsSink).
METRICS_SINK = "METRICS_SINK"

FROM_STACK_OUTPUTS = (
    "deploy with scripts/deploy, which sets it in .chalice/config.json from the infrastructure "
    "stack's outputs"
)
FROM_STAGE_CONFIG = "set it in the stage's environment_variables in .chalice/config.json"


def _required(env: Mapping[str, str], name: str, fix: str = FROM_STACK_OUTPUTS) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingMissing(f"environment variable {name} is not set: {fix}")
    return value


def _present(env: Mapping[str, str], name: str, fix: str = FROM_STACK_OUTPUTS) -> str:
    """A variable that must be set, where an empty value is meaningful ("none")."""
    if name not in env:
        raise SettingMissing(f"environment variable {name} is not set: {fix}")
    return env[name]


def _int(
    env: Mapping[str, str], name: str, low: int, high: int, fix: str = FROM_STACK_OUTPUTS
) -> int:
    raw = _required(env, name, fix)
    try:
        value = int(raw)
    except ValueError:
        raise SettingMissing(f"{name}={raw!r}: must be an integer") from None
    if not low <= value <= high:
        raise SettingMissing(f"{name}={value}: must be between {low} and {high}")
    return value


class MetricsSink(Enum):
    """How the app's metrics reach CloudWatch; the adapters are chosen in chalicelib/wiring.py."""

    # PutMetricData calls, batched (chalicelib/cloudwatch_metrics.py): works wherever the
    # CloudWatch API does, the local cloud included.
    PUT_METRIC_DATA = "put_metric_data"
    # Embedded Metric Format log lines through Powertools (chalicelib/emf_metrics.py): no API
    # call at all: CloudWatch Logs extracts the metrics from the function's log lines.
    EMF = "emf"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsSink:
        raw = _required(env, METRICS_SINK, FROM_STAGE_CONFIG)
        try:
            return cls(raw)
        except ValueError:
            names = ", ".join(sink.value for sink in cls)
            raise SettingMissing(f"{METRICS_SINK}={raw!r}: must be one of {names}") from None


@dataclass(frozen=True)
class Backoff:
    """When a failed record comes back: base_s x 2^(receive count - 1), at most max_s."""

    base_s: int
    max_s: int

    @property
    def enabled(self) -> bool:
        return self.base_s > 0

    def delay(self, receive_count: int) -> int | None:
        """Seconds until the next receive; None when backoff is off (the visibility timeout)."""
        if not self.enabled:
            return None
        doublings = min(max(receive_count - 1, 0), 20)
        return min(self.max_s, self.base_s * (1 << doublings))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Backoff:
        return cls(
            base_s=_int(env, TASK_RETRY_BACKOFF_BASE_SECONDS, 0, 3600, FROM_STAGE_CONFIG),
            # ChangeMessageVisibility's limit: 12 hours.
            max_s=_int(env, TASK_RETRY_BACKOFF_MAX_SECONDS, 1, 43_200, FROM_STAGE_CONFIG),
        )


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where the functions' database connections go, when not to the secret's host and port."""

    host: str
    port: int

    @classmethod
    def parse(cls, raw: str) -> DatabaseEndpoint | None:
        """`host:port`, or None for an empty value (no proxy)."""
        if not raw:
            return None
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise SettingMissing(
                f"{DATABASE_PROXY_ENDPOINT}={raw!r}: must be HOST:PORT (the database proxy's "
                "endpoint), or empty to connect to the database the secret names"
            )
        return cls(host, int(port))


@dataclass(frozen=True)
class Settings:
    """What the API and the worker need at run time."""

    task_queue_url: str
    dead_letter_queue_url: str
    database_secret_id: str
    database_proxy: DatabaseEndpoint | None  # None: straight to the secret's host and port
    max_receives: int
    metrics_namespace: str
    service_name: str  # the metrics' `service` dimension
    stage: str  # the metrics' `stage` dimension
    task_queue_name: str
    dead_letter_queue_name: str
    worker_function_name: str
    mapping_metrics_namespace: str  # "" where the platform publishes no mapping gauges
    retry_backoff: Backoff
    metrics_sink: MetricsSink
    api_function_name: str = ""  # "" where unknown: no API series
    database_instance: str = ""  # "" where unknown: no database series
    database_proxy_name: str = ""  # "" where the functions reach the database directly

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            task_queue_url=_required(env, TASK_QUEUE_URL),
            dead_letter_queue_url=_required(env, DEAD_LETTER_QUEUE_URL),
            database_secret_id=_required(env, DATABASE_SECRET_ID),
            database_proxy=DatabaseEndpoint.parse(_present(env, DATABASE_PROXY_ENDPOINT)),
            max_receives=_int(env, TASK_MAX_RECEIVES, 1, 1000),
            metrics_namespace=_required(env, POWERTOOLS_METRICS_NAMESPACE, FROM_STAGE_CONFIG),
            service_name=_required(env, POWERTOOLS_SERVICE_NAME, FROM_STAGE_CONFIG),
            stage=_required(env, APP_STAGE),
            task_queue_name=_required(env, TASK_QUEUE_NAME),
            dead_letter_queue_name=_required(env, DEAD_LETTER_QUEUE_NAME),
            worker_function_name=_required(env, WORKER_FUNCTION_NAME),
            mapping_metrics_namespace=_present(env, EVENT_SOURCE_MAPPING_METRICS_NAMESPACE),
            retry_backoff=Backoff.from_env(env),
            metrics_sink=MetricsSink.from_env(env),
            api_function_name=env.get(API_FUNCTION_NAME, ""),
            database_instance=env.get(DATABASE_INSTANCE_IDENTIFIER, ""),
            database_proxy_name=env.get(DATABASE_PROXY_NAME, ""),
        )

    @property
    def metric_dimensions(self) -> dict[str, str]:
        """The app's metrics' dimensions: one series per service and stage."""
        return {"service": self.service_name, "stage": self.stage}


@dataclass(frozen=True)
class WorkerTrigger:
    """The SQS trigger's settings, read when app.py is imported: by `chalice deploy` (which sets
    the stage's environment variables first) and again, harmlessly, in each function."""

    queue_name: str
    batch_size: int
    batching_window_seconds: int
    max_concurrency: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerTrigger:
        env = os.environ if env is None else env
        trigger = cls(
            queue_name=_required(env, TASK_QUEUE_NAME),
            batch_size=_int(env, WORKER_BATCH_SIZE, 1, 10_000),
            batching_window_seconds=_int(env, WORKER_BATCHING_WINDOW_SECONDS, 0, 300),
            max_concurrency=_int(env, WORKER_MAX_CONCURRENCY, 2, 1000),
        )
        if trigger.batch_size > 10 and trigger.batching_window_seconds < 1:
            # SQS's own rule, checked here so the deploy stops before creating anything.
            raise SettingMissing(
                f"{WORKER_BATCH_SIZE}={trigger.batch_size} needs "
                f"{WORKER_BATCHING_WINDOW_SECONDS} >= 1 (batches over 10 need a batching window)"
            )
        return trigger


@dataclass(frozen=True)
class DashboardAccess:
    """Who may read the API from a browser, read when app.py is imported (Chalice writes the
    CORS configuration into API Gateway at deploy time)."""

    origin: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardAccess:
        env = os.environ if env is None else env
        origin = _required(env, DASHBOARD_ORIGIN)
        if not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin:
            raise SettingMissing(
                f"{DASHBOARD_ORIGIN}={origin!r}: must be an origin such as "
                "http://BUCKET.s3-website.localhost:4566 (scheme, host, port; no path)"
            )
        return cls(origin)
