"""SQS event source mappings that scale like AWS's: several batches in flight per mapping.

LocalStack's open edition runs one batch at a time per mapping: its `EsmWorker.poller_loop`
thread calls `SqsPoller.poll_events()` (receive -> invoke -> delete) over and over, and
`ScalingConfig.MaximumConcurrency` is never read. One patch changes that: the factory that builds
the worker gets its SQS poller wrapped in `ScalingSqsPoller`. The worker's loop keeps its
lifecycle (state, enable/disable/delete, shutdown) and now calls our `poll_events()` as a
control tick; the tick keeps `ScalingPolicy.target` batch threads running, each of which
receives a batch and hands it to the stock poller's `handle_messages` (filtering, invoke,
ReportBatchItemFailures, deleting only what succeeded). Throttled invokes are retried by a
wrapper around the stock sender.

The stock poller talks to SQS and Lambda through LocalStack's internal boto3 clients; during a
drain their round trips (botocore, the in-memory HTTP, the handler chain, both ways) were most
of LocalStack's CPU. `DirectSqs` and `DirectLambdaInvoker` take the same calls and answer them
from LocalStack's SQS provider and LambdaService in-process (the provider still does the SQS
work, counts its metrics and moves messages to dead-letter queues); the boto3 clients remain
the fallback. What all this relies on in LocalStack is checked by `check_seams()`, at start-up
and in tests/integration/test_localstack_seams.py.

FIFO queues keep the stock one-batch-at-a-time poller: their order per message group matters
more than their concurrency, and the local cloud does not need them yet.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from localstack.runtime import hooks

from localcloud_ext.scaling_policy import (
    AWS_SCALE_UP_PER_MINUTE,
    GAUGE_NAMESPACE,
    ScalingLimits,
    ScalingPolicy,
    Throttled,
    retry_while_throttled,
)

LOG = logging.getLogger(__name__)

SCALE_UP_SETTING = "LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE"
CONTROL_TICK_SECONDS = 0.1
# With no batching window the pollers short-poll, and after an empty poll wait on the mapping's
# stop signal, from 0.05 s doubling to 0.5 s: an idle mapping makes 2 receives a second, picks a
# message up within 0.5 s, and stops at once when disabled (a long poll would still take messages
# for up to its wait after LocalStack already reports the mapping Disabled).
FIRST_EMPTY_WAIT_SECONDS = 0.05
LONGEST_EMPTY_WAIT_SECONDS = 0.5
# A batch that may still be invoked must start this long before its messages reappear.
VISIBILITY_MARGIN_SECONDS = 1.0
RECEIVE_ERROR_BACKOFF_SECONDS = 1.0
# Invoke payloads are split as the stock poller splits them (its 6 MB guard).
RECORDS_PER_INVOKE = 2500
LAST_STOP_WAIT_SECONDS = 10.0
WAIT_OVERRIDE_PARAM = "localcloud_gather_seconds"


def scale_up_per_minute_from_env() -> float:
    raw = os.environ.get(SCALE_UP_SETTING, "")
    if not raw:
        return AWS_SCALE_UP_PER_MINUTE
    try:
        return float(raw)
    except ValueError:
        LOG.warning(
            "%s=%r is not a number: using %s", SCALE_UP_SETTING, raw, AWS_SCALE_UP_PER_MINUTE
        )
        return AWS_SCALE_UP_PER_MINUTE


class ScalingSqsPoller:
    """Stands in for the mapping's `SqsPoller` inside LocalStack's `EsmWorker`. The worker's
    loop calls `poll_events()` (one control tick) until the mapping is disabled or deleted, then
    `close()`, which stops the batch threads after their current batch."""

    def __init__(
        self, sqs_poller: Any, esm_config: dict[str, Any], worker_stopped: threading.Event
    ) -> None:
        self._sqs = sqs_poller
        self.uuid: str = esm_config["UUID"]
        self._function_arn: str = esm_config["FunctionArn"]
        maximum = (esm_config.get("ScalingConfig") or {}).get("MaximumConcurrency")
        self.policy = ScalingPolicy(
            ScalingLimits.for_mapping(maximum, scale_up_per_minute_from_env()), time.monotonic()
        )
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        # The worker's own stop signal, set by disable/delete/update before its loop notices:
        # from then on no batch starts (LocalStack already reports the new state).
        self._stopping = worker_stopped
        self._wake = threading.Event()
        self._received_while_stopping: list[dict[str, Any]] = []
        self.in_flight = 0
        self._peak_in_flight = 0
        self._batch_deadline = threading.local()
        self._visibility_timeout = self._queue_visibility_timeout()
        self._register_wait_override()
        processor = sqs_poller.processor
        processor.sender = ThrottleRetryingSender(processor.sender, self)
        # Registered when the worker first polls: a mapping created disabled never publishes.
        self._gauges: list[str] | None = None

    # --- the EsmWorker's side ------------------------------------------------------------------

    def poll_events(self) -> None:
        if self._gauges is None:
            self._gauges = _register_gauges(self)
        with self._lock:
            target = self.policy.tick(time.monotonic())
            missing = target - len(self._threads)
            for _ in range(max(0, missing)):
                thread = threading.Thread(
                    target=self._run_batches, name=f"esm-batch-{self.uuid[:8]}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
        self._wake.wait(CONTROL_TICK_SECONDS)
        self._wake.clear()

    def close(self) -> None:
        """Disable, delete or shutdown: no new receives; batches in flight finish and delete
        what succeeded, as on AWS."""
        self._stopping.set()
        deadline = time.monotonic() + self._function_timeout() + LAST_STOP_WAIT_SECONDS
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        _unregister_gauges(self._gauges or [])
        self._sqs.close()

    # --- batch threads -------------------------------------------------------------------------

    def _run_batches(self) -> None:
        me = threading.current_thread()
        empty_wait = FIRST_EMPTY_WAIT_SECONDS
        try:
            while not self._stopping.is_set():
                with self._lock:
                    if len(self._threads) > self.policy.target:
                        return  # scaled down: this poller retires
                if self._run_one_batch():
                    empty_wait = FIRST_EMPTY_WAIT_SECONDS
                else:
                    self._stopping.wait(empty_wait)
                    empty_wait = min(2 * empty_wait, LONGEST_EMPTY_WAIT_SECONDS)
        finally:
            with self._lock:
                self._threads.discard(me)
                to_release: list[dict[str, Any]] = []
                if not self._threads and self._stopping.is_set():  # the last poller out
                    to_release, self._received_while_stopping = self._received_while_stopping, []
            if to_release:
                LOG.info(
                    "mapping %s stopped: %d message(s) visible again", self.uuid, len(to_release)
                )
                self._release(to_release)

    def _run_one_batch(self) -> bool:
        """One receive, and the batch it brought if any. False when the poll came back empty."""
        try:
            messages = self._receive()
        except Exception as error:
            LOG.warning("receive from %s failed: %s", self._sqs.source_arn, error)
            self._stopping.wait(RECEIVE_ERROR_BACKOFF_SECONDS)
            return True
        received_at = time.monotonic()
        if messages and self._stopping.is_set():
            # Received as the mapping stopped: made visible again once every poller of this
            # mapping is gone. Released any earlier, a sibling still polling would take
            # them again, and each receive counts towards the queue's maxReceiveCount.
            with self._lock:
                self._received_while_stopping += messages
            return True
        if not messages:
            with self._lock:
                self.policy.poll_came_back_empty(received_at)
            return False
        with self._lock:
            self.policy.messages_received(received_at, full=len(messages) >= self._sqs.batch_size)
            self.in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self.in_flight)
        self._wake.set()  # the control tick adds pollers now, not at its next tick
        self._batch_deadline.value = (
            received_at
            + self._visibility_timeout
            - self._function_timeout()
            - VISIBILITY_MARGIN_SECONDS
        )
        try:
            for start in range(0, len(messages), RECORDS_PER_INVOKE):
                self._sqs.handle_messages(messages[start : start + RECORDS_PER_INVOKE])
        except Exception as error:
            # The batch failed as a whole (function error, timeout, throttled to the end): its
            # messages were not deleted and reappear after the visibility timeout.
            LOG.info("a batch from %s failed: %r", self._sqs.source_arn, error)
            with self._lock:
                self.policy.batch_failed(time.monotonic())
        finally:
            with self._lock:
                self.in_flight -= 1
        return True

    def _receive(self) -> list[dict[str, Any]]:
        window = self._sqs.maximum_batching_window
        extra: dict[str, Any] = {}
        if window:
            # Gather until BatchSize messages or the window has passed, as AWS does (LocalStack's
            # plain long poll returns as soon as one message is there).
            extra[WAIT_OVERRIDE_PARAM] = window
        response = self._sqs.source_client.receive_message(
            QueueUrl=self._sqs.queue_url,
            MaxNumberOfMessages=min(self._sqs.batch_size, 10),
            WaitTimeSeconds=min(window, 20),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            sqs_override_max_message_count=self._sqs.batch_size,
            **extra,
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Messages a stopping poller received: visible again at once, for whoever polls next."""
        for start in range(0, len(messages), 10):
            self._sqs.source_client.change_message_visibility_batch(
                QueueUrl=self._sqs.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(messages[start : start + 10])
                ],
            )

    # --- what the batches need -----------------------------------------------------------------

    def batch_deadline(self) -> float:
        """The last moment the current thread's batch may (re)start an invocation."""
        deadline: float = getattr(self._batch_deadline, "value", 0.0)
        return deadline

    def record_throttle(self) -> None:
        with self._lock:
            self.policy.throttled(time.monotonic())

    def read_peak_in_flight(self) -> float:
        """The most batches in flight since the last read (the metric for the second just ended)."""
        with self._lock:
            peak = self._peak_in_flight
            self._peak_in_flight = self.in_flight
        return float(peak)

    def read_target(self) -> float:
        with self._lock:
            return float(self.policy.target)

    def _function_timeout(self) -> float:
        from localstack.services.lambda_.provider_utils import get_function_version_from_arn

        try:
            return float(get_function_version_from_arn(self._function_arn).config.timeout)
        except Exception:  # the function is being deleted: the mapping is going too
            return 3.0

    def _queue_visibility_timeout(self) -> float:
        attributes = self._sqs.source_client.get_queue_attributes(
            QueueUrl=self._sqs.queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        return float(attributes["VisibilityTimeout"])

    def _register_wait_override(self) -> None:
        """LocalStack's SQS takes a header that makes a receive wait for MaxNumberOfMessages
        (its stock poller sends it only for windows over 20 s); send it for any window."""
        from localstack.services.sqs.constants import (
            HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS as WAIT_HEADER,
        )

        def take_param(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if (seconds := params.pop(WAIT_OVERRIDE_PARAM, None)) is not None:
                context[WAIT_OVERRIDE_PARAM] = str(seconds)

        def set_header(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if (seconds := context.pop(WAIT_OVERRIDE_PARAM, None)) is not None:
                params["headers"][WAIT_HEADER] = seconds

        events = self._sqs.source_client.meta.events
        events.register("provide-client-params.sqs.ReceiveMessage", take_param)
        events.register("before-call.sqs.ReceiveMessage", set_header)


class ThrottleRetryingSender:
    """Wraps the stock Lambda sender: a throttled invoke (TooManyRequestsException, from the
    function's reserved or the account's concurrency) is retried with backoff while the batch's
    messages stay invisible, and each throttle slows the mapping's scaling down."""

    def __init__(self, sender: Any, poller: ScalingSqsPoller) -> None:
        self._sender = sender
        self._poller = poller

    def send_events(self, events: list[dict[str, Any]] | dict[str, Any]) -> Any:
        from localstack.services.lambda_.event_source_mapping.senders.sender import SenderError

        try:
            return retry_while_throttled(
                lambda: self._sender.send_events(events),
                is_throttle=_is_throttle,
                deadline=self._poller.batch_deadline(),
                clock=time.monotonic,
                sleep=time.sleep,
                on_throttle=self._poller.record_throttle,
            )
        except Throttled as error:
            raise SenderError(message=str(error), error={"errorType": "Throttled"}) from error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sender, name)


def _is_throttle(error: Exception) -> bool:
    """A throttle, from a boto3 client (ClientError) or from LocalStack's LambdaService."""
    response: dict[str, Any] = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code") or getattr(error, "code", None)
    return bool(code == "TooManyRequestsException")


class DirectLambdaInvoker:
    """Stands in for the boto3 Lambda client the stock sender invokes through: the same
    `invoke(FunctionName=ARN, Payload=..., InvocationType=...)` and response shape, answered by
    LocalStack's LambdaService in-process. The client's trip (botocore serialising, LocalStack's
    in-memory HTTP, handler chain and parser, and back) was a quarter of LocalStack's CPU while
    a mapping drained a backlog."""

    def __init__(self, lambda_service: Any) -> None:
        self._service = lambda_service

    def invoke(
        self, *, FunctionName: str, Payload: str, InvocationType: str, **extra: Any
    ) -> dict[str, Any]:
        from localstack.services.lambda_.api_utils import function_locators_from_arn
        from localstack.utils.strings import long_uid, to_bytes

        name, qualifier, account_id, region = function_locators_from_arn(FunctionName)
        request_id = long_uid()
        result = self._service.invoke(
            function_name=name,
            qualifier=extra.get("Qualifier", qualifier),
            region=region,
            account_id=account_id,
            invocation_type=InvocationType,
            client_context=None,
            request_id=request_id,
            payload=to_bytes(Payload),
            trace_context={},
            user_agent=None,
        )
        response: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": io.BytesIO(to_bytes(result.payload or b"")),
            "ExecutedVersion": result.executed_version,
            "ResponseMetadata": {"RequestId": request_id},
        }
        if result.is_error:
            response["FunctionError"] = "Unhandled"
        return response


class DirectSqs:
    """Stands in for the boto3 SQS client of a mapping's poller for the calls a batch makes
    (receive, delete, change visibility), answered by LocalStack's SQS provider in-process with
    the same parameters and response shapes; anything else goes to the client. Receive and
    delete through the client (botocore, LocalStack's in-memory HTTP, handler chain) were half
    of LocalStack's CPU while a mapping drained a backlog."""

    def __init__(self, provider: Any, client: Any, account_id: str, region: str) -> None:
        from localstack.aws.spec import load_service

        self._provider = provider
        self._client = client
        self._account_id = account_id
        self._region = region
        self._service_model = load_service("sqs")  # the provider reads its protocol

    def receive_message(
        self,
        *,
        QueueUrl: str,
        MaxNumberOfMessages: int,
        WaitTimeSeconds: int,
        MessageAttributeNames: list[str],
        MessageSystemAttributeNames: list[str],
        sqs_override_max_message_count: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        result = self._provider.receive_message(
            self._context(
                count=sqs_override_max_message_count, wait=extra.get(WAIT_OVERRIDE_PARAM)
            ),
            queue_url=QueueUrl,
            message_attribute_names=MessageAttributeNames,
            message_system_attribute_names=MessageSystemAttributeNames,
            max_number_of_messages=MaxNumberOfMessages,
            wait_time_seconds=WaitTimeSeconds,
        )
        return {"Messages": result.get("Messages") or []}

    def delete_message_batch(
        self,
        *,
        QueueUrl: str,
        Entries: list[dict[str, Any]],
        sqs_override_max_message_count: int | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._provider.delete_message_batch(
            self._context(count=sqs_override_max_message_count), queue_url=QueueUrl, entries=Entries
        )
        return result

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._provider.change_message_visibility_batch(
            self._context(), queue_url=QueueUrl, entries=Entries
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _context(self, count: int | None = None, wait: Any = None) -> Any:
        """What the provider reads of a request: account, region, protocol, and the headers of
        LocalStack's own overrides (more than 10 messages a receive, waiting for a full batch)."""
        from localstack.aws.api import RequestContext
        from localstack.http import Request
        from localstack.services.sqs.constants import (
            HEADER_LOCALSTACK_SQS_OVERRIDE_MESSAGE_COUNT,
            HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS,
        )

        headers = {}
        if count and count > 10:
            headers[HEADER_LOCALSTACK_SQS_OVERRIDE_MESSAGE_COUNT] = str(count)
        if wait:
            headers[HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS] = str(wait)
        context = RequestContext(Request("POST", "/", headers=headers))
        context.account_id = self._account_id
        context.region = self._region
        context.service = self._service_model
        return context


_LAMBDA_SERVICE: list[Any] = []  # LocalStack's one LambdaService, once its provider made it
_SQS_PROVIDER: list[Any] = []  # LocalStack's SQS provider, once made


def _register_gauges(poller: ScalingSqsPoller) -> list[str]:
    """The mapping's concurrency, for the dashboard: AWS has no such metric (its nearest is the
    function's ConcurrentExecutions), hence a namespace of our own."""
    try:
        from localcloud_ext import service_metrics
    except ImportError:
        return []
    from localstack.utils.aws.arns import parse_arn

    arn = parse_arn(poller._function_arn)
    keys = []
    reads: dict[str, Callable[[], float]] = {
        "ConcurrentBatches": poller.read_peak_in_flight,
        "ScalingTarget": poller.read_target,
    }
    for metric, read in reads.items():
        # One key per poller: an update replaces the mapping's poller, and the old one's
        # unregistering must not remove the new one's gauges.
        key = f"esm/{poller.uuid}/{id(poller)}/{metric}"
        service_metrics.register_gauge(
            key,
            account_id=arn["account"],
            region=arn["region"],
            namespace=GAUGE_NAMESPACE,
            metric=metric,
            dimensions={"EventSourceMappingUUID": poller.uuid},
            read=read,
        )
        keys.append(key)
    return keys


def _unregister_gauges(keys: list[str]) -> None:
    if not keys:
        return
    from localcloud_ext import service_metrics

    for key in keys:
        service_metrics.unregister_gauge(key)


@hooks.on_infra_start()
def scale_sqs_event_source_mappings() -> None:
    from localstack.services.lambda_.event_source_mapping.esm_worker import EsmWorker
    from localstack.services.lambda_.event_source_mapping.esm_worker_factory import (
        EsmWorkerFactory,
    )
    from localstack.services.lambda_.event_source_mapping.pollers.sqs_poller import SqsPoller
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.sqs.provider import SqsProvider
    from localstack.utils.aws.arns import parse_arn
    from localstack.utils.patch import patch

    check_seams()

    @patch(LambdaService.__init__)
    def remember_the_service(init: Any, self: LambdaService) -> None:
        init(self)
        _LAMBDA_SERVICE[:] = [self]

    @patch(SqsProvider.__init__)
    def remember_the_provider(init: Any, self: SqsProvider) -> None:
        init(self)
        _SQS_PROVIDER[:] = [self]

    @patch(EsmWorkerFactory.get_esm_worker)
    def get_esm_worker(get_esm_worker: Any, self: EsmWorkerFactory) -> EsmWorker:
        worker: EsmWorker = get_esm_worker(self)
        if type(worker.poller) is SqsPoller and not worker.poller.is_fifo_queue:
            if _LAMBDA_SERVICE:
                worker.poller.processor.sender.target_client = DirectLambdaInvoker(
                    _LAMBDA_SERVICE[0]
                )
            if _SQS_PROVIDER:
                arn = parse_arn(worker.poller.source_arn)
                worker.poller.source_client = DirectSqs(
                    _SQS_PROVIDER[0], worker.poller.source_client, arn["account"], arn["region"]
                )
            worker.poller = ScalingSqsPoller(
                worker.poller, worker.esm_config, worker._shutdown_event
            )
        return worker


def check_seams() -> None:
    """What this module relies on in LocalStack; raises SeamMoved if any of it changed."""
    import inspect

    from localstack.services.lambda_.event_source_mapping.esm_event_processor import (
        EsmEventProcessor,
    )
    from localstack.services.lambda_.event_source_mapping.esm_worker import EsmWorker
    from localstack.services.lambda_.event_source_mapping.esm_worker_factory import (
        EsmWorkerFactory,
    )
    from localstack.services.lambda_.event_source_mapping.pollers.sqs_poller import SqsPoller
    from localstack.services.lambda_.event_source_mapping.senders.lambda_sender import (
        LambdaSender,
    )
    from localstack.services.lambda_.event_source_mapping.senders.sender import Sender

    from localcloud_ext.patches import SeamMoved, require_parameters

    require_parameters(EsmWorkerFactory.get_esm_worker, ["self"])
    require_parameters(SqsPoller.handle_messages, ["self", "messages"])
    require_parameters(LambdaSender.send_events, ["self", "events"])
    if "target_client" not in Sender.__init__.__code__.co_names:
        raise SeamMoved("Sender no longer keeps its target_client")
    if "self.target_client.invoke(" not in inspect.getsource(LambdaSender.send_events):
        raise SeamMoved("LambdaSender.send_events no longer invokes through its target_client")
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.sqs.provider import SqsProvider

    require_parameters(SqsProvider.__init__, ["self"])
    for operation, parameters in {
        "receive_message": [
            "context",
            "queue_url",
            "message_system_attribute_names",
            "message_attribute_names",
            "max_number_of_messages",
            "wait_time_seconds",
        ],
        "delete_message_batch": ["context", "queue_url", "entries"],
        "change_message_visibility_batch": ["context", "queue_url", "entries"],
    }.items():
        actual = inspect.signature(getattr(SqsProvider, operation)).parameters
        if not set(parameters) <= set(actual):
            raise SeamMoved(f"SqsProvider.{operation} takes {list(actual)}, we pass {parameters}")
    require_parameters(LambdaService.__init__, ["self"])
    require_parameters(
        LambdaService.invoke,
        [
            "self",
            "function_name",
            "qualifier",
            "region",
            "account_id",
            "invocation_type",
            "client_context",
            "request_id",
            "payload",
            "trace_context",
            "user_agent",
        ],
    )
    require_parameters(EsmEventProcessor.__init__, ["self", "sender", "logger"])
    loop_source = inspect.getsource(EsmWorker.poller_loop)
    for needed in ("self.poller.poll_events()", "self.poller.close()"):
        if needed not in loop_source:
            raise SeamMoved(f"EsmWorker.poller_loop no longer calls {needed}")
    if "_shutdown_event" not in EsmWorker.__init__.__code__.co_names:
        raise SeamMoved("EsmWorker no longer has its _shutdown_event")
    for attribute in ("batch_size", "maximum_batching_window", "queue_url"):
        if attribute not in SqsPoller.__init__.__code__.co_names:
            raise SeamMoved(f"SqsPoller no longer sets {attribute}")
    if "is_fifo_queue" not in SqsPoller.__dict__:
        raise SeamMoved("SqsPoller.is_fifo_queue is gone")
