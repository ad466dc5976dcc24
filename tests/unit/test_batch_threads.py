"""The scaling SQS mapping's batch threads on a fake stock poller and a fake queue (no
LocalStack): the idle thread waits on the queue and picks a message up when it arrives, a stop
ends every wait at once and loses nothing, scaled-down threads retire, throttles are retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localcloud_ext.batch_threads import (
    LONG_POLL_SECONDS,
    ScalingSqsPoller,
    StopSignal,
    ThrottleRetryingSender,
    is_throttle,
)
from localcloud_ext.scaling_policy import ScalingLimits, Throttled

WAIT_SECONDS = 10.0  # a bound for waits in these tests, never a timing assertion


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f} s: {what}")
        time.sleep(0.005)


class FakeQueue:
    """A queue of message bodies with receipt handles, visibility and an arrival condition, as
    LocalStack's StandardQueue keeps them; it is its own SQS client and QueueWaiter."""

    def __init__(self) -> None:
        self.arrived = threading.Condition()
        self.visible: list[str] = []
        self.in_flight: dict[str, str] = {}  # receipt handle -> body
        self.receives = 0
        self.released: list[str] = []
        self.waits = 0
        self.wakes = 0
        self.hold_receive: threading.Event | None = None  # a receive blocks on it, once set
        self.received_during_hold = threading.Event()

    def send(self, *bodies: str) -> None:
        with self.arrived:
            self.visible += bodies
            for _ in bodies:
                self.arrived.notify()

    # --- SqsSource ---
    def receive_message(self, **request: Any) -> dict[str, Any]:
        with self.arrived:
            self.receives += 1
            taken = self.visible[: request["MaxNumberOfMessages"]]
            del self.visible[: len(taken)]
            messages = []
            for body in taken:
                handle = f"rh-{body}-{self.receives}"
                self.in_flight[handle] = body
                messages.append({"Body": body, "ReceiptHandle": handle})
        if messages and self.hold_receive is not None:
            self.received_during_hold.set()
            self.hold_receive.wait(WAIT_SECONDS)
        return {"Messages": messages}

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> Any:
        with self.arrived:
            for entry in Entries:
                body = self.in_flight.pop(entry["ReceiptHandle"])
                self.released.append(body)
                self.visible.append(body)
        return {"Successful": Entries}

    def get_queue_attributes(self, *, QueueUrl: str, AttributeNames: list[str]) -> Any:
        return {"Attributes": {"VisibilityTimeout": "60"}}

    def delete(self, handle: str) -> None:
        with self.arrived:
            self.in_flight.pop(handle)

    # --- QueueWaiter ---
    def wait_for_messages(self, queue_url: str, timeout: float, stopped: threading.Event) -> None:
        with self.arrived:
            self.waits += 1
            woken = self.wakes
            self.arrived.wait_for(
                lambda: self.visible or stopped.is_set() or self.wakes != woken, timeout
            )

    def wake_waiters(self, queue_url: str) -> None:
        with self.arrived:
            self.wakes += 1
            self.arrived.notify_all()


class FakeStockPoller:
    """The members of LocalStack's SqsPoller the batch threads use; handle_messages "invokes"
    by recording the batch and deleting its messages, as the stock poller does on success."""

    def __init__(self, queue: FakeQueue, batch_size: int = 10) -> None:
        self.queue = queue
        self._batch_size = batch_size
        self.batches: list[list[str]] = []
        self.handled = threading.Event()
        self.closed = False
        self.invoke: Callable[[list[str]], None] = lambda bodies: None

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def maximum_batching_window(self) -> int:
        return 0

    @property
    def queue_url(self) -> str:
        return "http://sqs.local/queue/q"

    @property
    def source_arn(self) -> str:
        return "arn:aws:sqs:us-east-1:000000000000:q"

    @property
    def source_client(self) -> FakeQueue:
        return self.queue

    def handle_messages(self, messages: list[dict[str, Any]]) -> None:
        bodies = [m["Body"] for m in messages]
        self.invoke(bodies)
        for message in messages:
            self.queue.delete(message["ReceiptHandle"])
        self.batches.append(bodies)
        self.handled.set()

    def close(self) -> None:
        self.closed = True


class Mapping:
    """A ScalingSqsPoller driven as LocalStack's EsmWorker drives it: its loop calls
    poll_events() until the stop signal is set, then close()."""

    def __init__(
        self, stock: FakeStockPoller, maximum: int | None = 10, per_minute: float = 300.0
    ) -> None:
        self.stock = stock
        self.stopped = StopSignal()
        self.poller = ScalingSqsPoller(
            stock,
            uuid="00000000-mapping",
            limits=ScalingLimits.for_mapping(maximum, per_minute),
            stopped=self.stopped,
            waiter=stock.queue,
            function_timeout=lambda: 3.0,
        )
        self.loop = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.poller.poll_events()
        self.poller.close()

    def stop(self) -> None:
        self.stopped.set()
        self.loop.join(WAIT_SECONDS)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def running(queue: FakeQueue) -> Iterator[Mapping]:
    mapping = Mapping(FakeStockPoller(queue))
    mapping.loop.start()
    yield mapping
    mapping.stop()


def test_an_idle_mapping_waits_on_the_queue_instead_of_polling_it(
    queue: FakeQueue, running: Mapping
) -> None:
    eventually(lambda: queue.waits >= 1, "the idle thread waiting on the queue")
    receives_when_idle = queue.receives
    time.sleep(0.3)  # an idle window: a polling thread would receive again in it
    assert queue.receives == receives_when_idle
    assert len(running.poller.threads()) == 1


def test_a_message_sent_to_an_idle_mapping_is_picked_up_by_the_waiting_thread(
    queue: FakeQueue, running: Mapping
) -> None:
    eventually(lambda: queue.waits >= 1, "the idle thread waiting on the queue")
    queue.send("m1")
    eventually(lambda: running.stock.batches == [["m1"]], "the message handled")
    assert queue.in_flight == {} and queue.visible == []


def test_stopping_an_idle_mapping_ends_its_wait_at_once_and_closes_the_poller(
    queue: FakeQueue, running: Mapping
) -> None:
    eventually(lambda: queue.waits >= 1, "the idle thread waiting on the queue")
    waiting = running.poller.threads()
    running.stopped.set()
    for thread in waiting:
        thread.join(LONG_POLL_SECONDS / 4)  # far shorter than the wait's own timeout
    assert not any(thread.is_alive() for thread in waiting)
    running.loop.join(WAIT_SECONDS)
    assert running.stock.closed


def test_messages_received_as_the_mapping_stops_are_made_visible_again_not_handled(
    queue: FakeQueue, running: Mapping
) -> None:
    eventually(lambda: queue.waits >= 1, "the idle thread waiting on the queue")
    queue.hold_receive = threading.Event()
    queue.send("late-1", "late-2")
    queue.received_during_hold.wait(WAIT_SECONDS)
    running.stopped.set()  # the receive is still under way: its messages came too late
    queue.hold_receive.set()
    running.loop.join(WAIT_SECONDS)
    assert running.stock.batches == []
    assert sorted(queue.released) == ["late-1", "late-2"]
    assert sorted(queue.visible) == ["late-1", "late-2"] and queue.in_flight == {}


def test_a_backlog_adds_threads_and_an_empty_queue_retires_them_down_to_one(
    queue: FakeQueue,
) -> None:
    mapping = Mapping(FakeStockPoller(queue, batch_size=1), maximum=5)
    release = threading.Event()
    mapping.stock.invoke = lambda bodies: release.wait(WAIT_SECONDS)  # batches stay in flight
    queue.send(*[f"m{n}" for n in range(20)])
    mapping.loop.start()
    try:
        eventually(lambda: mapping.poller.in_flight == 5, "five batches in flight at once")
        assert len(mapping.poller.threads()) == 5
        release.set()
        eventually(lambda: len(mapping.stock.batches) == 20, "the backlog drained")
        eventually(lambda: len(mapping.poller.threads()) == 1, "back to one idle thread")
        assert mapping.poller.policy.target == 1
    finally:
        release.set()
        mapping.stop()
    assert sorted(b for batch in mapping.stock.batches for b in batch) == sorted(
        f"m{n}" for n in range(20)
    )


def test_when_the_backlog_ends_the_threads_are_those_in_flight_and_at_most_one_waiting(
    queue: FakeQueue,
) -> None:
    # a rate of 100 a second: the target runs far ahead of the five batches there are
    mapping = Mapping(FakeStockPoller(queue, batch_size=1), maximum=50, per_minute=6000.0)
    release = threading.Event()
    mapping.stock.invoke = lambda bodies: release.wait(WAIT_SECONDS)
    queue.send(*[f"m{n}" for n in range(5)])
    mapping.loop.start()
    try:
        eventually(lambda: mapping.poller.in_flight == 5, "five batches in flight")
        # one thread besides the busy five, waiting on the queue: the others were woken to retire
        # at most one thread besides the busy five: the others, waiting, were woken to retire
        eventually(lambda: len(mapping.poller.threads()) <= 6, "the idle surplus retired")
        assert mapping.poller.policy.target <= 6
    finally:
        release.set()
        mapping.stop()


def test_messages_that_arrive_during_a_long_first_batch_start_batches_of_their_own(
    queue: FakeQueue,
) -> None:
    # A spike's first messages go to the idle thread, whose batch then runs for long; the
    # threads added for it find the queue empty before the rest of the spike arrives.
    mapping = Mapping(FakeStockPoller(queue, batch_size=1), maximum=50)
    release = threading.Event()
    mapping.stock.invoke = lambda bodies: release.wait(WAIT_SECONDS)
    mapping.loop.start()
    try:
        eventually(lambda: queue.waits == 1, "the idle thread waiting on the queue")
        queue.send("first")
        eventually(lambda: mapping.poller.in_flight == 1, "the first batch in flight")
        # a thread waits on the queue again (the siblings that found nothing retire without)
        eventually(lambda: queue.waits > 1, "a thread waiting beside the batch")
        assert len(mapping.poller.threads()) == 2
        queue.send("second", "third")
        eventually(lambda: mapping.poller.in_flight == 3, "the later messages in batches too")
    finally:
        release.set()
        mapping.stop()
    assert sorted(b for batch in mapping.stock.batches for b in batch) == [
        "first",
        "second",
        "third",
    ]


def test_batches_in_flight_when_the_mapping_stops_finish(queue: FakeQueue) -> None:
    mapping = Mapping(FakeStockPoller(queue, batch_size=1), maximum=5)
    release = threading.Event()
    mapping.stock.invoke = lambda bodies: release.wait(WAIT_SECONDS)
    queue.send("a", "b", "c")
    mapping.loop.start()
    eventually(lambda: mapping.poller.in_flight == 3, "three batches in flight")
    mapping.stopped.set()
    release.set()
    mapping.loop.join(WAIT_SECONDS)
    assert sorted(b for batch in mapping.stock.batches for b in batch) == ["a", "b", "c"]
    assert queue.in_flight == {} and queue.visible == []


class TooManyRequests(Exception):
    code = "TooManyRequestsException"


class FlakySender:
    def __init__(self, throttles: int) -> None:
        self.throttles = throttles
        self.sent: list[Any] = []

    def send_events(self, events: list[dict[str, Any]] | dict[str, Any]) -> Any:
        if self.throttles:
            self.throttles -= 1
            raise TooManyRequests()
        self.sent.append(events)
        return "ok"


class BatchFailed(Exception):
    pass


def sender_for(queue: FakeQueue, inner: FlakySender) -> tuple[ThrottleRetryingSender, Mapping]:
    mapping = Mapping(FakeStockPoller(queue))
    sleeps: list[float] = []
    sender = ThrottleRetryingSender(
        inner, mapping.poller, lambda error: BatchFailed(str(error)), sleep=sleeps.append
    )
    return sender, mapping


def test_a_throttled_send_is_retried_and_each_throttle_slows_the_mapping(
    queue: FakeQueue,
) -> None:
    sender, mapping = sender_for(queue, FlakySender(throttles=2))
    mapping.poller._batch_deadline.value = time.monotonic() + 60  # a batch's visibility ahead
    mapping.poller.policy.target = 5
    assert sender.send_events({"Records": []}) == "ok"
    assert mapping.poller.policy.target == 3  # one fewer per throttle


def test_a_send_throttled_past_the_batch_s_deadline_fails_as_the_stock_poller_expects(
    queue: FakeQueue,
) -> None:
    sender, mapping = sender_for(queue, FlakySender(throttles=1000))
    mapping.poller._batch_deadline.value = time.monotonic()  # no time left to retry
    with pytest.raises(BatchFailed) as raised:
        sender.send_events({"Records": []})
    assert isinstance(raised.value.__cause__, Throttled)


def test_throttles_are_recognised_from_boto3_and_from_localstack() -> None:
    boto_error = Exception()
    boto_error.response = {"Error": {"Code": "TooManyRequestsException"}}  # type: ignore[attr-defined]
    assert is_throttle(boto_error)
    assert is_throttle(TooManyRequests())
    assert not is_throttle(RuntimeError("function error"))
