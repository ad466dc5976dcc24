"""Open-model sending: each request leaves at its scheduled time, whatever happened to the ones
before it, from a bounded pool of threads. When every thread is still waiting on an answer the
next request leaves late; how late is recorded, so a report shows when the client, not the
system under load, was the limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import requests

from burst.schedule import PlannedRequest

REQUEST_TIMEOUT_SECONDS = 30.0
JSON_HEADERS = {"Content-Type": "application/json"}
# A 5xx or a transport error says nothing certain of what the API kept, so the request is sent
# again, unchanged: the same idempotency keys give each task once. The waits between attempts
# (47 s in all) outlast the 30 s after which a retry takes over the tasks of a request that
# died mid-way without an answer (chalicelib/service.py, ABANDONED_AFTER_SECONDS).
RETRY_DELAYS_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 16.0)
TRANSPORT = "transport error"
# A send this far behind schedule counts as late: a thread was not free when it was due.
LATE_SECONDS = 0.05


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    """What the API answered one request. `outcomes` has one entry per task of the request
    when the answer was a 2xx ("accepted", "duplicate", "conflict", as the API says);
    `task_ids` the id of each of those tasks (None for a task the API did not keep)."""

    status: int | None
    outcomes: tuple[str, ...] = ()
    task_ids: tuple[str | None, ...] = ()
    error: str | None = None  # a transport error, or a 2xx body that is not what the API sends
    # The answers of the earlier attempts (a status, or "transport error"), when retried.
    retried: tuple[str, ...] = ()

    @property
    def retryable(self) -> bool:
        """A transport error or a 5xx: the API may have kept some, all or none of it."""
        return self.status is None or self.status >= 500

    @property
    def attempts(self) -> int:
        return len(self.retried) + 1


@dataclass(frozen=True)
class Sent:
    """One request as it went: `sent_at` and `answered_at` in seconds from the burst's start."""

    request: PlannedRequest
    sent_at: float
    answered_at: float
    answer: Answer

    @property
    def lateness(self) -> float:
        return max(0.0, self.sent_at - self.request.due)

    @property
    def latency(self) -> float:
        return self.answered_at - self.sent_at


@dataclass
class SendLog:
    """Every request sent, in the order answered; `not_sent` were due after the deadline.
    `started` is the clock's reading at the start, to which all offsets are relative."""

    started: float
    sent: list[Sent] = field(default_factory=list)
    not_sent: list[PlannedRequest] = field(default_factory=list)

    @property
    def tasks_sent(self) -> int:
        return sum(len(s.request.tasks) for s in self.sent)

    @property
    def tasks_not_sent(self) -> int:
        return sum(len(r.tasks) for r in self.not_sent)


def send_on_schedule(
    planned: Sequence[PlannedRequest],
    send: Callable[[PlannedRequest], Answer],
    threads: int,
    max_seconds: float,
    clock: Clock,
    on_sent: Callable[[SendLog], None] | None = None,
) -> SendLog:
    """Send each planned request at its due time on `threads` threads. The threads take the
    requests in due order; each waits for its request's time, sends, and records the answer.
    A request due after `max_seconds`, or not started by then, is not sent."""
    log = SendLog(started=clock.now())
    ordered = sorted(planned, key=lambda r: (r.due, r.index))
    lock = threading.Lock()
    next_request = iter(ordered)

    def sender() -> None:
        while True:
            with lock:
                request = next(next_request, None)
            if request is None:
                return
            if request.due > max_seconds:
                with lock:
                    log.not_sent.append(request)
                continue
            wait = log.started + request.due - clock.now()
            if wait > 0:
                clock.sleep(wait)
            sent_at = clock.now() - log.started
            if sent_at > max_seconds:
                with lock:
                    log.not_sent.append(request)
                continue
            answer = send(request)
            done = Sent(request, sent_at, clock.now() - log.started, answer)
            with lock:
                log.sent.append(done)
                if on_sent is not None:
                    on_sent(log)

    with ThreadPoolExecutor(threads, thread_name_prefix="burst-sender") as pool:
        workers = [pool.submit(sender) for _ in range(min(threads, len(ordered)))]
        for worker in workers:
            worker.result()  # a bug in a sender surfaces here rather than vanishing
    return log


# --- HTTP -----------------------------------------------------------------------------------


def answer_from(batch: bool, status: int, body: Any) -> Answer:
    """The per-task outcomes in a 2xx answer of POST /tasks or POST /tasks/batch. Raises
    KeyError / TypeError / ValueError when the body is not what the route answers."""
    results = body["results"] if batch else [body]
    outcomes = tuple(str(r["outcome"]) for r in results)
    ids = tuple(
        str(r["id"]) if r["outcome"] in ("accepted", "duplicate") else None for r in results
    )
    return Answer(status, outcomes, ids)


class ThreadSessions:
    """One requests.Session per thread (a Session is not thread-safe; per thread, its
    connections are reused), all closed together."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()


class HttpSender:
    """POSTs planned requests to the API: one task to /tasks, several to /tasks/batch. Each
    thread keeps its own requests.Session, so connections are reused. A 5xx or transport error
    is retried with the same body (RETRY_DELAYS_SECONDS); the answer records every attempt."""

    def __init__(
        self,
        api_url: str,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        api_key: str | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api_url
        self._timeout = timeout
        # The write routes' key (API Gateway's x-api-key header), when the API asks for one.
        self._headers = {"x-api-key": api_key} if api_key else {}
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._sessions = ThreadSessions()

    def _session(self) -> requests.Session:
        return self._sessions.get()

    def __call__(self, request: PlannedRequest) -> Answer:
        earlier: list[str] = []
        for delay in (*self._retry_delays, None):
            answer = self._attempt(request)
            if not answer.retryable or delay is None:
                return replace(answer, retried=tuple(earlier))
            earlier.append(TRANSPORT if answer.status is None else str(answer.status))
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns")

    def _attempt(self, request: PlannedRequest) -> Answer:
        batch = len(request.tasks) > 1
        url = f"{self._api}tasks/batch" if batch else f"{self._api}tasks"
        body = {"tasks": list(request.tasks)} if batch else request.tasks[0]
        try:
            response = self._session().post(
                url, json=body, headers=self._headers, timeout=self._timeout
            )
        except requests.RequestException as e:
            return Answer(None, error=type(e).__name__)
        if not 200 <= response.status_code < 300:
            return Answer(response.status_code)
        try:
            return answer_from(batch, response.status_code, response.json())
        except (KeyError, TypeError, ValueError):
            return Answer(response.status_code, error=f"unreadable {response.status_code} body")

    def close(self) -> None:
        self._sessions.close()
