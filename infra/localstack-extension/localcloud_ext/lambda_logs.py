"""Lambda's logs in LocalStack, delivered as Lambda delivers them: each event with its own time,
while the invocation runs.

Stock LocalStack ships an invocation's whole log once it has ended, every line stamped with the
time it was shipped (START and END of a 2-second invocation carry the same millisecond), with
one PutLogEvents per invocation from one thread per function version. Here each execution
environment of our executor writes its events as they happen to one shipper
(`log_shipper.LogShipper`, one thread for all functions, at most one PutLogEvents per log stream
per second); LocalStack's own path (`store_logs`, its LogHandler) ships nothing for them, so
nothing is shipped twice. The invocation's log still comes back in the InvocationResult, for the
invoke's LogResult tail.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import date
from typing import Any

from localstack.runtime import hooks

from localcloud_ext import emf, service_metrics
from localcloud_ext.log_shipper import LogEvent, LogShipper, LogSink, LogStream
from localcloud_ext.seams import require_parameters

LOG = logging.getLogger(__name__)

_shipper_lock = threading.Lock()
_shipper: LogShipper | None = None
_clients_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}  # CloudWatch Logs clients by (region, role ARN)
_sink_lock = threading.Lock()
_sink: service_metrics.MetricsSink | None = None  # where embedded metrics go, chosen on first use


def sink_for(function_version: Any, environment_id: str) -> LogSink:
    """Where one execution environment's log events go: the stream LocalStack names it
    (`ExecutionEnvironment.get_log_stream_name`, as the function sees it in
    AWS_LAMBDA_LOG_STREAM_NAME)."""
    function_id = function_version.id
    stream = LogStream(
        group=f"/aws/lambda/{function_id.function_name}",
        name=f"{date.today():%Y/%m/%d}/[{function_id.qualifier}]{environment_id}",
        region=function_id.region,
        role_arn=function_version.config.role,
    )
    return shipper().sink(stream)


def shipper() -> LogShipper:
    """The one shipper of every function's logs, started on first use."""
    global _shipper
    with _shipper_lock:
        if _shipper is None:
            _shipper = LogShipper(_put_log_events, shipped=extract_embedded_metrics)
            _shipper.start()
        return _shipper


@hooks.on_infra_start()
def ship_lambda_logs_as_written() -> None:
    """LocalStack's version manager hands each invocation's log to its LogHandler; our
    executor's environments have shipped those events already, as they were written."""
    from localstack.services.lambda_.invocation.version_manager import LambdaVersionManager
    from localstack.utils.patch import patch

    from localcloud_ext.executor import ProcessRuntimeExecutor

    require_parameters(
        LambdaVersionManager.store_logs, ["self", "invocation_result", "execution_env"]
    )

    @patch(LambdaVersionManager.store_logs)
    def store_logs(
        store_logs: Any, self: LambdaVersionManager, invocation_result: Any, execution_env: Any
    ) -> None:
        if isinstance(getattr(execution_env, "runtime_executor", None), ProcessRuntimeExecutor):
            return
        store_logs(self, invocation_result, execution_env)


def extract_embedded_metrics(shipped: list[tuple[LogStream, list[LogEvent]]]) -> None:
    """CloudWatch Logs' EMF extraction for Lambda's log groups: the metrics of the EMF lines
    just shipped, into CloudWatch's store (one transaction per namespace and function account
    and region; `emf`)."""
    by_scope: dict[tuple[str, str], list[str]] = {}
    for stream, events in shipped:
        messages = [event.message for event in events if emf.MARKER in event.message]
        if messages:
            # The function's account: its role's (arn:aws:iam::ACCOUNT:role/NAME).
            scope = (stream.role_arn.split(":")[4], stream.region)
            by_scope.setdefault(scope, []).extend(messages)
    if not by_scope:
        return
    sink = _metrics_sink()
    for (account_id, region), messages in by_scope.items():
        for call in emf.metric_calls(messages, account_id, region):
            sink.put(call)


def _metrics_sink() -> service_metrics.MetricsSink:
    global _sink
    with _sink_lock:
        if _sink is None:
            _sink = service_metrics.choose_sink()
        return _sink


def _client(region: str, role_arn: str) -> Any:
    """A CloudWatch Logs client acting as the function's role, as LocalStack's LogHandler has."""
    from localstack.aws.connect import connect_to
    from localstack.utils.aws.client_types import ServicePrincipal

    with _clients_lock:
        client = _clients.get((region, role_arn))
        if client is None:
            client = _clients[(region, role_arn)] = connect_to.with_assumed_role(
                region_name=region, role_arn=role_arn, service_principal=ServicePrincipal.lambda_
            ).logs
        return client


def _put_log_events(stream: LogStream, events: list[LogEvent]) -> None:
    """As LocalStack's LogHandler does it: create the group and stream on first use."""
    client = _client(stream.region, stream.role_arn)
    log_events = [
        {"timestamp": event.timestamp_ms, "message": event.message + "\n"} for event in events
    ]
    group, name = stream.group, stream.name
    try:
        client.put_log_events(logGroupName=group, logStreamName=name, logEvents=log_events)
    except client.exceptions.ResourceNotFoundException:
        with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
            client.create_log_group(logGroupName=group)
        with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
            client.create_log_stream(logGroupName=group, logStreamName=name)
        client.put_log_events(logGroupName=group, logStreamName=name, logEvents=log_events)
