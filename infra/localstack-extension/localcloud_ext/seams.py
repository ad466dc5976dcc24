"""Where the scaling SQS poller plugs into LocalStack, and the extension's one seam check.

LocalStack's open edition runs one batch at a time per mapping: its `EsmWorker.poller_loop`
thread calls `SqsPoller.poll_events()` (receive -> invoke -> delete) over and over, and
`ScalingConfig.MaximumConcurrency` is never read. One patch changes that: the factory that builds
the worker gets its SQS poller wrapped in `batch_threads.ScalingSqsPoller` (the logic, free of
LocalStack), talking to SQS and Lambda in-process through `direct_clients`. The worker's loop
keeps its lifecycle (state, enable/disable/delete, shutdown).

`require_parameters` and `SeamMoved` are what every patch of the extension checks its seam with
(patches.py, service_metrics.py, cloudwatch_queries.py import them from here); `check_seams()`
is what the poller relies on, checked at start-up and in tests/integration/test_localstack_seams.py.

FIFO queues keep the stock one-batch-at-a-time poller: their order per message group matters
more than their concurrency, and the local cloud does not need them yet.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

from localstack.runtime import hooks

from localcloud_ext import contract
from localcloud_ext.batch_threads import (
    WAIT_OVERRIDE_PARAM,
    QueueWaiter,
    ScalingSqsPoller,
    StopSignal,
    ThrottleRetryingSender,
)
from localcloud_ext.direct_clients import DirectLambdaInvoker, DirectSqs, PausingWaiter
from localcloud_ext.scaling_policy import ScalingLimits, Throttled

LOG = logging.getLogger(__name__)


class SeamMoved(RuntimeError):
    """A LocalStack internal this extension patches is not what it was written against."""


def require_parameters(function: Any, expected: list[str]) -> None:
    actual = list(inspect.signature(function).parameters)
    if actual != expected:
        raise SeamMoved(
            f"{function.__qualname__} takes {actual}, this extension expects {expected}"
        )


def scale_up_per_minute_from_env() -> float:
    """`scripts/localcloud` validated it; a LocalStack started otherwise falls back to AWS's."""
    setting = contract.ESM_SCALE_UP_PER_MINUTE
    try:
        return setting.parse(os.environ.get(setting.variable))
    except ValueError as error:
        LOG.warning("%s: using %g", error, setting.default)
        return setting.default


_LAMBDA_SERVICE: list[Any] = []  # LocalStack's one LambdaService, once its provider made it
_SQS_PROVIDER: list[Any] = []  # LocalStack's SQS provider, once made


@hooks.on_infra_start()
def scale_sqs_event_source_mappings() -> None:
    from localstack.services.lambda_.event_source_mapping.esm_worker import EsmWorker
    from localstack.services.lambda_.event_source_mapping.esm_worker_factory import (
        EsmWorkerFactory,
    )
    from localstack.services.lambda_.event_source_mapping.pollers.sqs_poller import SqsPoller
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.sqs.provider import SqsProvider
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
            worker.poller = scaling_poller(worker)
        return worker


def scaling_poller(worker: Any) -> ScalingSqsPoller:
    """The stock poller of `worker` (an EsmWorker), wrapped: in-process clients, a stop signal
    that wakes waiting threads, throttle retries around its sender."""
    from localstack.services.lambda_.event_source_mapping.senders.sender import SenderError
    from localstack.utils.aws.arns import parse_arn

    stock = worker.poller
    waiter: QueueWaiter = PausingWaiter()
    if _LAMBDA_SERVICE:
        stock.processor.sender.target_client = DirectLambdaInvoker(_LAMBDA_SERVICE[0])
    if _SQS_PROVIDER:
        arn = parse_arn(stock.source_arn)
        stock.source_client = waiter = DirectSqs(
            _SQS_PROVIDER[0], stock.source_client, arn["account"], arn["region"]
        )
    else:
        _register_wait_override(stock.source_client)
    # Before the worker starts (its start() only clears it): every set() wakes our waiters.
    stopped = worker._shutdown_event = StopSignal()
    config = worker.esm_config
    function_arn: str = config["FunctionArn"]
    maximum = (config.get("ScalingConfig") or {}).get("MaximumConcurrency")
    poller = ScalingSqsPoller(
        stock,
        uuid=config["UUID"],
        limits=ScalingLimits.for_mapping(maximum, scale_up_per_minute_from_env()),
        stopped=stopped,
        waiter=waiter,
        function_timeout=lambda: _function_timeout(function_arn),
        publish_gauges=lambda p: _publish_gauges(p, function_arn),
    )

    def as_batch_failure(error: Throttled) -> Exception:
        failure: Exception = SenderError(message=str(error), error={"errorType": "Throttled"})
        return failure

    stock.processor.sender = ThrottleRetryingSender(
        stock.processor.sender, poller, as_batch_failure
    )
    return poller


def _function_timeout(function_arn: str) -> float:
    from localstack.services.lambda_.provider_utils import get_function_version_from_arn

    try:
        return float(get_function_version_from_arn(function_arn).config.timeout)
    except Exception:  # the function is being deleted: the mapping is going too
        return 3.0


def _register_wait_override(client: Any) -> None:
    """LocalStack's SQS takes a header that makes a receive wait for MaxNumberOfMessages
    (its stock poller sends it only for windows over 20 s); send it for any window. Only the
    boto3 client needs this: DirectSqs sets the header itself."""
    from localstack.services.sqs.constants import (
        HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS as WAIT_HEADER,
    )

    def take_param(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if (seconds := params.pop(WAIT_OVERRIDE_PARAM, None)) is not None:
            context[WAIT_OVERRIDE_PARAM] = str(seconds)

    def set_header(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if (seconds := context.pop(WAIT_OVERRIDE_PARAM, None)) is not None:
            params["headers"][WAIT_HEADER] = seconds

    client.meta.events.register("provide-client-params.sqs.ReceiveMessage", take_param)
    client.meta.events.register("before-call.sqs.ReceiveMessage", set_header)


def _publish_gauges(poller: ScalingSqsPoller, function_arn: str) -> Callable[[], None]:
    """The mapping's concurrency, for the dashboard: AWS has no such metric (its nearest is the
    function's ConcurrentExecutions), hence a namespace of our own. Returns the unpublishing."""
    from localstack.utils.aws.arns import parse_arn

    from localcloud_ext import service_metrics

    arn = parse_arn(function_arn)
    keys = []
    reads: dict[str, Callable[[], float]] = {
        contract.CONCURRENT_BATCHES_METRIC: poller.read_peak_in_flight,
        contract.SCALING_TARGET_METRIC: poller.read_target,
    }
    for metric, read in reads.items():
        # One key per poller: an update replaces the mapping's poller, and the old one's
        # unregistering must not remove the new one's gauges.
        key = f"esm/{poller.uuid}/{id(poller)}/{metric}"
        service_metrics.register_gauge(
            key,
            account_id=arn["account"],
            region=arn["region"],
            namespace=contract.EVENT_SOURCE_MAPPING_NAMESPACE,
            metric=metric,
            dimensions={contract.EVENT_SOURCE_MAPPING_DIMENSION: poller.uuid},
            read=read,
        )
        keys.append(key)

    def unpublish() -> None:
        for key in keys:
            service_metrics.unregister_gauge(key)

    return unpublish


def check_seams() -> None:
    """What the scaling poller relies on in LocalStack; raises SeamMoved if any of it changed."""
    _check_esm_seams()
    _check_in_process_seams()


def _check_esm_seams() -> None:
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

    require_parameters(EsmWorkerFactory.get_esm_worker, ["self"])
    require_parameters(SqsPoller.handle_messages, ["self", "messages"])
    require_parameters(LambdaSender.send_events, ["self", "events"])
    if "target_client" not in Sender.__init__.__code__.co_names:
        raise SeamMoved("Sender no longer keeps its target_client")
    if "self.target_client.invoke(" not in inspect.getsource(LambdaSender.send_events):
        raise SeamMoved("LambdaSender.send_events no longer invokes through its target_client")
    require_parameters(EsmEventProcessor.__init__, ["self", "sender", "logger"])
    loop_source = inspect.getsource(EsmWorker.poller_loop)
    for needed in ("self.poller.poll_events()", "self.poller.close()"):
        if needed not in loop_source:
            raise SeamMoved(f"EsmWorker.poller_loop no longer calls {needed}")
    if "_shutdown_event" not in EsmWorker.__init__.__code__.co_names:
        raise SeamMoved("EsmWorker no longer has its _shutdown_event")
    for method in (EsmWorker.stop, EsmWorker.delete, EsmWorker.stop_for_shutdown):
        if "self._shutdown_event.set()" not in inspect.getsource(method):
            raise SeamMoved(f"EsmWorker.{method.__name__} no longer sets its _shutdown_event")
    for attribute in ("batch_size", "maximum_batching_window", "queue_url"):
        if attribute not in SqsPoller.__init__.__code__.co_names:
            raise SeamMoved(f"SqsPoller no longer sets {attribute}")
    if "is_fifo_queue" not in SqsPoller.__dict__:
        raise SeamMoved("SqsPoller.is_fifo_queue is gone")


def _check_in_process_seams() -> None:
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.sqs.models import StandardQueue
    from localstack.services.sqs.provider import SqsProvider
    from localstack.services.sqs.queue import InterruptibleQueue

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
        "_resolve_queue": ["context", "queue_url"],
    }.items():
        actual = inspect.signature(getattr(SqsProvider, operation)).parameters
        if not set(parameters) <= set(actual):
            raise SeamMoved(f"SqsProvider.{operation} takes {list(actual)}, we pass {parameters}")
    # the long poll's wait: a standard queue's visible messages are an InterruptibleQueue whose
    # get() waits on not_empty and whose shutdown() wakes it
    if "self.visible = InterruptiblePriorityQueue()" not in inspect.getsource(
        StandardQueue.__init__
    ):
        raise SeamMoved("StandardQueue no longer keeps its visible messages in an Interruptible…")
    get_source = inspect.getsource(InterruptibleQueue.get)
    if "self.not_empty.wait(" not in get_source or "is_shutdown" not in get_source:
        raise SeamMoved("InterruptibleQueue.get no longer waits on not_empty / is_shutdown")
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
