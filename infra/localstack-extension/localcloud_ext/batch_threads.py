"""The batch threads of an SQS event source mapping that scales like AWS's. No LocalStack here.

`ScalingSqsPoller` stands in for the mapping's stock `SqsPoller` inside LocalStack's
`EsmWorker`: the worker's loop calls `poll_events()` (one control tick) until the mapping is
disabled or deleted, then `close()`. The tick keeps `ScalingPolicy.target` batch threads
running; each receives a batch and hands it to the stock poller's `handle_messages` (filtering,
invoke, ReportBatchItemFailures, deleting only what succeeded). An idle thread waits on the
queue itself (`QueueWaiter`), as AWS's long poll does, and wakes the moment a message arrives
or the mapping stops. Throttled invokes are retried by `ThrottleRetryingSender`.

Everything LocalStack-specific comes in through the Protocols below (`StockPoller`,
`QueueWaiter`) and plain callables, so this module is unit-tested on fakes; the adapters are
in `localcloud_ext.direct_clients`, the patch that installs all this in `localcloud_ext.seams`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from localcloud_ext.scaling_policy import (
    ScalingLimits,
    ScalingPolicy,
    Throttled,
    retry_while_throttled,
)

LOG = logging.getLogger(__name__)

CONTROL_TICK_SECONDS = 0.1
# An idle batch thread waits on the queue this long before it polls again: AWS's longest long
# poll. Arrivals and the mapping's stop end the wait at once; the timeout only bounds it.
LONG_POLL_SECONDS = 20.0
# A batch that may still be invoked must start this long before its messages reappear.
VISIBILITY_MARGIN_SECONDS = 1.0
RECEIVE_ERROR_BACKOFF_SECONDS = 1.0
# Invoke payloads are split as the stock poller splits them (its 6 MB guard).
RECORDS_PER_INVOKE = 2500
LAST_STOP_WAIT_SECONDS = 10.0
# A receive keyword the direct SQS client (and the boto3 client's event hooks) turn into
# LocalStack's header that makes a receive gather until MaxNumberOfMessages or the window.
WAIT_OVERRIDE_PARAM = "localcloud_gather_seconds"

Message = dict[str, Any]


class SqsSource(Protocol):
    """The calls a batch thread makes on the mapping's SQS client (boto3's names and shapes)."""

    def receive_message(self, **request: Any) -> dict[str, Any]: ...

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> Any: ...

    def get_queue_attributes(self, *, QueueUrl: str, AttributeNames: list[str]) -> Any: ...


class StockPoller(Protocol):
    """The members of LocalStack's `SqsPoller` this module uses."""

    @property
    def batch_size(self) -> int: ...

    @property
    def maximum_batching_window(self) -> int: ...

    @property
    def queue_url(self) -> str: ...

    @property
    def source_arn(self) -> str: ...

    @property
    def source_client(self) -> SqsSource: ...

    def handle_messages(self, messages: list[Message]) -> None: ...

    def close(self) -> None: ...


class QueueWaiter(Protocol):
    """Waits on a queue without receiving from it, as a long poll waits before it takes."""

    def wait_for_messages(self, queue_url: str, timeout: float, stopped: threading.Event) -> None:
        """Return when the queue has visible messages, `stopped` is set (and `wake_waiters`
        called), or `timeout` has passed, whichever is first."""

    def wake_waiters(self, queue_url: str) -> None:
        """End every wait on the queue now (the waiters look at their `stopped` again)."""


class StopSignal(threading.Event):
    """The mapping's stop signal (LocalStack's worker sets it on disable, delete and shutdown),
    which also runs listeners when set: a thread waiting on the queue rather than on this event
    is woken at once."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set(self) -> None:
        super().set()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # the stop itself must never fail
                LOG.exception("a stop listener failed")


class ScalingSqsPoller:
    """One mapping's batch threads, under its `ScalingPolicy`."""

    def __init__(
        self,
        stock: StockPoller,
        *,
        uuid: str,
        limits: ScalingLimits,
        stopped: StopSignal,
        waiter: QueueWaiter,
        function_timeout: Callable[[], float],
        publish_gauges: Callable[[ScalingSqsPoller], Callable[[], None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = stock
        self.uuid = uuid
        self.clock = clock
        self.policy = ScalingPolicy(limits, clock())
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        # The worker's own stop signal, set by disable/delete/update before its loop notices:
        # from then on no batch starts (LocalStack already reports the new state).
        self._stopping = stopped
        self._waiter = waiter
        stopped.add_listener(lambda: waiter.wake_waiters(stock.queue_url))
        self._function_timeout = function_timeout
        self._wake = threading.Event()
        self._received_while_stopping: list[Message] = []
        self.in_flight = 0
        self._waiting = 0  # threads waiting on the queue (the long poll's wait)
        self._peak_in_flight = 0
        self._batch_deadline = threading.local()
        self._visibility_timeout = self._queue_visibility_timeout()
        # Published when the worker first polls: a mapping created disabled never publishes.
        self._publish_gauges = publish_gauges
        self._unpublish_gauges: Callable[[], None] | None = None

    # --- the EsmWorker's side ------------------------------------------------------------------

    def poll_events(self) -> None:
        if self._unpublish_gauges is None and self._publish_gauges is not None:
            self._unpublish_gauges = self._publish_gauges(self)
        with self._lock:
            target = self.policy.tick(self.clock())
            for _ in range(max(0, target - len(self._threads))):
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
        deadline = self.clock() + self._function_timeout() + LAST_STOP_WAIT_SECONDS
        for thread in self.threads():
            thread.join(max(0.0, deadline - self.clock()))
        if self._unpublish_gauges is not None:
            self._unpublish_gauges()
        self._sqs.close()

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)

    # --- batch threads -------------------------------------------------------------------------

    def _run_batches(self) -> None:
        try:
            while not self._stopping.is_set() and not self._scaled_down():
                if self._run_one_batch() or self._scaled_down():
                    continue
                with self._lock:
                    self._waiting += 1
                try:
                    self._waiter.wait_for_messages(
                        self._sqs.queue_url, LONG_POLL_SECONDS, self._stopping
                    )
                finally:
                    with self._lock:
                        self._waiting -= 1
        finally:
            self._leave()

    def _scaled_down(self) -> bool:
        """True if this thread is one too many for the target: it retires."""
        with self._lock:
            return len(self._threads) > self.policy.target

    def _leave(self) -> None:
        with self._lock:
            self._threads.discard(threading.current_thread())
            to_release: list[Message] = []
            if not self._threads and self._stopping.is_set():  # the last thread out
                to_release, self._received_while_stopping = self._received_while_stopping, []
        if to_release:
            LOG.info("mapping %s stopped: %d message(s) visible again", self.uuid, len(to_release))
            self._release(to_release)

    def _run_one_batch(self) -> bool:
        """One receive, and the batch it brought if any. False when the poll came back empty."""
        try:
            messages = self._receive()
        except Exception as error:
            LOG.warning("receive from %s failed: %s", self._sqs.source_arn, error)
            self._stopping.wait(RECEIVE_ERROR_BACKOFF_SECONDS)
            return True
        received_at = self.clock()
        if messages and self._stopping.is_set():
            # Received as the mapping stopped: made visible again once every thread of this
            # mapping is gone. Released any earlier, a sibling still polling would take them
            # again, and each receive counts towards the queue's maxReceiveCount.
            with self._lock:
                self._received_while_stopping += messages
            return True
        if not messages:
            with self._lock:
                active = len(self._threads) - self._waiting
                self.policy.poll_came_back_empty(
                    received_at, active=active, in_flight=self.in_flight
                )
                surplus = len(self._threads) > self.policy.target
            if surplus:  # threads waiting on the queue look again, and the surplus retires
                self._waiter.wake_waiters(self._sqs.queue_url)
            return False
        with self._lock:
            self.policy.messages_received(received_at, full=len(messages) >= self._sqs.batch_size)
            self.in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self.in_flight)
        self._wake.set()  # the control tick adds threads now, not at its next tick
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
                self.policy.batch_failed(self.clock())
        finally:
            with self._lock:
                self.in_flight -= 1
        return True

    def _receive(self) -> list[Message]:
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
        messages: list[Message] = response.get("Messages", [])
        return messages

    def _release(self, messages: list[Message]) -> None:
        """Messages a stopping thread received: visible again at once, for whoever polls next."""
        for start in range(0, len(messages), 10):
            self._sqs.source_client.change_message_visibility_batch(
                QueueUrl=self._sqs.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(messages[start : start + 10])
                ],
            )

    # --- what the batches and the gauges need --------------------------------------------------

    def batch_deadline(self) -> float:
        """The last moment the current thread's batch may (re)start an invocation."""
        deadline: float = getattr(self._batch_deadline, "value", 0.0)
        return deadline

    def record_throttle(self) -> None:
        with self._lock:
            self.policy.throttled(self.clock())

    def read_peak_in_flight(self) -> float:
        """The most batches in flight since the last read (the metric for the second just ended)."""
        with self._lock:
            peak = self._peak_in_flight
            self._peak_in_flight = self.in_flight
        return float(peak)

    def read_target(self) -> float:
        with self._lock:
            return float(self.policy.target)

    def _queue_visibility_timeout(self) -> float:
        attributes = self._sqs.source_client.get_queue_attributes(
            QueueUrl=self._sqs.queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        return float(attributes["VisibilityTimeout"])


class Sender(Protocol):
    def send_events(self, events: list[dict[str, Any]] | dict[str, Any]) -> Any: ...


class ThrottleRetryingSender:
    """Wraps the stock Lambda sender: a throttled invoke (TooManyRequestsException, from the
    function's reserved or the account's concurrency) is retried with backoff while the batch's
    messages stay invisible, and each throttle slows the mapping's scaling down. Past the
    batch's deadline the throttle becomes `as_batch_failure(error)`: LocalStack's own kind of
    failed send, so that the stock poller handles it as any failed batch."""

    def __init__(
        self,
        sender: Sender,
        poller: ScalingSqsPoller,
        as_batch_failure: Callable[[Throttled], Exception],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sender = sender
        self._poller = poller
        self._as_batch_failure = as_batch_failure
        self._sleep = sleep

    def send_events(self, events: list[dict[str, Any]] | dict[str, Any]) -> Any:
        try:
            return retry_while_throttled(
                lambda: self._sender.send_events(events),
                is_throttle=is_throttle,
                deadline=self._poller.batch_deadline(),
                clock=self._poller.clock,
                sleep=self._sleep,
                on_throttle=self._poller.record_throttle,
            )
        except Throttled as error:
            raise self._as_batch_failure(error) from error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sender, name)


def is_throttle(error: Exception) -> bool:
    """A throttle, from a boto3 client (ClientError) or from LocalStack's LambdaService."""
    response: dict[str, Any] = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code") or getattr(error, "code", None)
    return bool(code == "TooManyRequestsException")
