"""The open-model sender: requests leave on schedule whatever the answers' pace, lateness is
measured when the pool runs out of threads, and nothing leaves after the deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from burst.schedule import PlannedRequest
from burst.sender import Answer, HttpSender, SystemClock, answer_from, send_on_schedule

Send = Callable[[PlannedRequest], Answer]


class FakeClock:
    """Time passes only when someone sleeps, or when the fake API takes time to answer."""

    def __init__(self) -> None:
        self.time = 100.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.time += seconds


def planned(dues: list[float]) -> list[PlannedRequest]:
    return [PlannedRequest(i, due, i, ({"type": "echo"},)) for i, due in enumerate(dues)]


def answering_after(clock: FakeClock, seconds: float) -> Send:
    def send(request: PlannedRequest) -> Answer:
        clock.sleep(seconds)
        return Answer(202, ("accepted",), (f"id-{request.index}",))

    return send


def test_requests_leave_at_their_due_times_when_answers_are_quick() -> None:
    clock = FakeClock()

    log = send_on_schedule(planned([0.0, 0.5, 1.25]), answering_after(clock, 0.0), 1, 60, clock)

    assert [s.sent_at for s in log.sent] == [0.0, 0.5, 1.25]
    assert [s.lateness for s in log.sent] == [0.0, 0.0, 0.0]
    assert log.tasks_sent == 3 and not log.not_sent


def test_slow_answers_with_no_free_thread_make_sends_late_and_it_is_measured() -> None:
    clock = FakeClock()

    log = send_on_schedule(planned([0.0, 0.1, 0.2, 0.3]), answering_after(clock, 0.5), 1, 60, clock)

    assert [s.sent_at for s in log.sent] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert [s.lateness for s in log.sent] == pytest.approx([0.0, 0.4, 0.8, 1.2])
    assert [s.latency for s in log.sent] == pytest.approx([0.5] * 4)


def test_nothing_is_sent_after_the_deadline() -> None:
    clock = FakeClock()

    log = send_on_schedule(
        planned([0.0, 1.0, 2.0, 50.0]), answering_after(clock, 1.5), 1, 3.0, clock
    )

    # 0.0 -> sent at 0; 1.0 -> at 1.5; 2.0 -> at 3.0 (not after the deadline); 50.0 -> never
    assert [s.request.index for s in log.sent] == [0, 1, 2]
    assert [r.index for r in log.not_sent] == [3]
    assert log.tasks_not_sent == 1


def test_a_late_start_past_the_deadline_is_not_sent() -> None:
    clock = FakeClock()

    log = send_on_schedule(planned([0.0, 0.1]), answering_after(clock, 5.0), 1, 3.0, clock)

    assert [s.request.index for s in log.sent] == [0]
    assert [r.index for r in log.not_sent] == [1]


def slow_api(seconds: float, in_flight: list[int]) -> Send:
    """An API that takes `seconds` per answer, recording the most requests it held at once."""
    lock = threading.Lock()
    current = [0]

    def send(request: PlannedRequest) -> Answer:
        with lock:
            current[0] += 1
            in_flight.append(current[0])
        time.sleep(seconds)
        with lock:
            current[0] -= 1
        return Answer(202, ("accepted",), (str(request.index),))

    return send


def test_slow_answers_do_not_hold_back_the_schedule_while_threads_are_free() -> None:
    dues = [i * 0.01 for i in range(10)]

    enough = send_on_schedule(planned(dues), slow_api(0.1, []), 10, 60, SystemClock())
    one = send_on_schedule(planned(dues), slow_api(0.1, []), 1, 60, SystemClock())

    assert max(s.lateness for s in enough.sent) < 0.08
    assert max(s.lateness for s in one.sent) > 0.7  # the 10th waits for 9 answers of 0.1 s


def test_the_pool_bounds_the_requests_in_flight() -> None:
    in_flight: list[int] = []

    log = send_on_schedule(planned([0.0] * 20), slow_api(0.02, in_flight), 4, 60, SystemClock())

    assert len(log.sent) == 20
    assert max(in_flight) == 4


def test_a_batch_answer_gives_an_id_per_accepted_task() -> None:
    body = {
        "accepted": 2,
        "results": [
            {"id": "a", "outcome": "accepted"},
            {"id": "b", "outcome": "conflict"},
            {"id": "c", "outcome": "duplicate"},
        ],
    }

    answer = answer_from(True, 202, body)

    assert answer.outcomes == ("accepted", "conflict", "duplicate")
    assert answer.task_ids == ("a", None, "c")


def test_a_single_answer_gives_its_id_and_an_odd_body_is_an_error() -> None:
    assert answer_from(False, 202, {"id": "x", "outcome": "accepted"}).task_ids == ("x",)
    with pytest.raises(KeyError):
        answer_from(True, 202, {"id": "x"})


# --- retries: a 5xx or a transport error is sent again with the same body -----------------------


class ScriptedSender(HttpSender):
    """HttpSender whose attempts answer from a script instead of the network."""

    def __init__(self, answers: list[Answer], delays: tuple[float, ...]) -> None:
        self.slept: list[float] = []
        super().__init__("http://127.0.0.1:1/", retry_delays=delays, sleep=self.slept.append)
        self._answers = list(answers)
        self.bodies: list[tuple[object, ...]] = []

    def _attempt(self, request: PlannedRequest) -> Answer:
        self.bodies.append(request.tasks)
        return self._answers.pop(0)


def test_a_5xx_and_a_transport_error_are_retried_with_the_same_tasks_until_an_answer() -> None:
    accepted = Answer(202, ("accepted",), ("id-1",))
    sender = ScriptedSender([Answer(503), Answer(None, error="ReadTimeout"), accepted], (1, 2, 4))
    [request] = planned([0.0])

    answer = sender(request)

    assert (answer.status, answer.task_ids) == (202, ("id-1",))
    assert answer.retried == ("503", "transport error") and answer.attempts == 3
    assert sender.slept == [1, 2]
    assert sender.bodies == [request.tasks] * 3  # the same idempotency keys every time


def test_a_client_error_is_not_retried() -> None:
    sender = ScriptedSender([Answer(400)], (1, 2))

    answer = sender(planned([0.0])[0])

    assert (answer.status, answer.retried, sender.slept) == (400, (), [])


def test_retries_are_bounded_and_the_last_answer_is_kept() -> None:
    sender = ScriptedSender([Answer(502), Answer(502), Answer(503)], (1, 2))

    answer = sender(planned([0.0])[0])

    assert (answer.status, answer.retried) == (503, ("502", "502"))
    assert answer.retryable  # still failing: the report counts it
