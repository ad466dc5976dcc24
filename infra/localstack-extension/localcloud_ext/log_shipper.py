"""Log events of Lambda execution environments, shipped to CloudWatch Logs in batches.

Environments write each event as it happens (a line of output, a platform line), stamped with
the time it was written. One shipper thread sends them with at most one PutLogEvents per log
stream per second (a batch over CloudWatch's per-call limits is split into the fewest calls that
fit), in the order they were written, while the invocation is still running.

Stdlib only: LocalStack's adapter (`lambda_logs.py`) supplies the call that puts a batch; unit
tests drive it on a fake clock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

LOG = logging.getLogger(__name__)

# CloudWatch Logs' limits for one PutLogEvents call: events, and bytes counted as AWS counts them
# (each message's UTF-8 bytes plus 26 per event); one event's message at most 256 KiB.
MAX_EVENTS_PER_PUT = 10_000
MAX_BYTES_PER_PUT = 1_048_576
LOG_EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 262_144
# A line's text, so that it fits one event with its newline.
MAX_LINE_BYTES = MAX_EVENT_BYTES - LOG_EVENT_OVERHEAD_BYTES - 1
# The least time between two batches of one log stream; also how long a stream's first event
# waits for others to join it. Lambda's own log delivery takes seconds too.
SHIPPING_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of a log stream, without its newline, and when it was written."""

    timestamp_ms: int
    message: str


class LogSink(Protocol):
    """Where an execution environment writes its log events, in order."""

    def write(self, event: LogEvent) -> None: ...


class DiscardingSink:
    """A sink for environments whose logs go nowhere (tests, tools)."""

    def write(self, event: LogEvent) -> None:
        pass


@dataclass(frozen=True)
class LogStream:
    """A CloudWatch Logs stream, and who writes to it (the function's region and role)."""

    group: str
    name: str
    region: str
    role_arn: str


PutLogEvents = Callable[[LogStream, list[LogEvent]], None]
# Told, once per shipping cycle and after its puts, everything that cycle shipped.
Shipped = Callable[[list[tuple[LogStream, list[LogEvent]]]], None]


@dataclass
class _Batch:
    due: float  # clock time at which it is shipped
    events: list[LogEvent] = field(default_factory=list)


class _StreamSink:
    def __init__(self, shipper: LogShipper, stream: LogStream) -> None:
        self._shipper = shipper
        self._stream = stream

    def write(self, event: LogEvent) -> None:
        self._shipper.write(self._stream, event)


# How often the shipper forgets the last puts of streams that went quiet.
_FORGET_EVERY_SECONDS = 60.0


class LogShipper:
    """Batches log events per stream and ships each stream's batch at most once per interval.

    A batch is due `interval` after its first event was written, and never sooner than
    `interval` after the stream's last put: a short invocation goes out in one call, a long one
    every second while it runs. Due batches wait in a heap, so a thousand streams cost no scan.
    """

    def __init__(
        self,
        put: PutLogEvents,
        interval: float = SHIPPING_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        shipped: Shipped | None = None,
    ) -> None:
        self._put = put
        self._shipped = shipped
        self._interval = interval
        self._clock = clock
        self._changed = threading.Condition()  # guards everything below
        self._batches: dict[LogStream, _Batch] = {}
        self._due: list[tuple[float, int, LogStream]] = []  # a heap; the int breaks ties
        self._sequence = itertools.count()
        self._last_put: dict[LogStream, float] = {}
        self._forgotten_at = clock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def sink(self, stream: LogStream) -> LogSink:
        """Where one environment writes: its log stream."""
        return _StreamSink(self, stream)

    def write(self, stream: LogStream, event: LogEvent) -> None:
        with self._changed:
            batch = self._batches.get(stream)
            if batch is None:
                now = self._clock()
                due = max(now, self._last_put.get(stream, now)) + self._interval
                batch = self._batches[stream] = _Batch(due)
                if not self._due or due < self._due[0][0]:
                    self._changed.notify()  # due before the batch the thread waits for
                heapq.heappush(self._due, (due, next(self._sequence), stream))
            batch.events.append(event)

    def seconds_until_due(self) -> float | None:
        """How long until the next batch is due (0 when one is), None when nothing is pending."""
        with self._changed:
            return self._seconds_until_due()

    def ship_due(self, everything: bool = False) -> None:
        """Put every batch that is due (or all of them), each stream's in as few calls as
        CloudWatch allows."""
        with self._changed:
            now = self._clock()
            taken: list[tuple[LogStream, list[LogEvent]]] = []
            while self._due and (everything or self._due[0][0] <= now):
                _, _, stream = heapq.heappop(self._due)
                taken.append((stream, self._batches.pop(stream).events))
                self._last_put[stream] = now
            self._forget_quiet_streams(now)
        for stream, events in taken:
            for chunk in put_log_chunks(events):
                try:
                    self._put(stream, chunk)
                except Exception:  # diagnostics only: the shipper must go on for the others
                    LOG.exception("could not ship logs to %s %s", stream.group, stream.name)
        if taken and self._shipped is not None:
            try:
                self._shipped(taken)
            except Exception:
                LOG.exception("what was shipped could not be handed on")

    def start(self) -> None:
        with self._changed:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="lambda-log-shipper", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ship what is pending, then end the thread."""
        with self._changed:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._changed.notify()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping:
                    wait = self._seconds_until_due()
                    if wait == 0:
                        break
                    self._changed.wait(wait)
                stopping = self._stopping
            self.ship_due(everything=stopping)
            if stopping:
                return

    def _seconds_until_due(self) -> float | None:
        if not self._due:
            return None
        return max(0.0, self._due[0][0] - self._clock())

    def _forget_quiet_streams(self, now: float) -> None:
        """Drop the last puts that no longer hold a batch back, once a minute."""
        if now - self._forgotten_at < _FORGET_EVERY_SECONDS:
            return
        self._forgotten_at = now
        for stream in [s for s, at in self._last_put.items() if now - at >= self._interval]:
            del self._last_put[stream]


def put_log_chunks(events: list[LogEvent]) -> list[list[LogEvent]]:
    """`events` cut into consecutive chunks that each fit one PutLogEvents call."""
    chunks: list[list[LogEvent]] = [[]]
    size = 0
    for event in events:
        event_size = event_bytes(event)
        if chunks[-1] and (
            len(chunks[-1]) >= MAX_EVENTS_PER_PUT or size + event_size > MAX_BYTES_PER_PUT
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(event)
        size += event_size
    return [chunk for chunk in chunks if chunk]


def event_bytes(event: LogEvent) -> int:
    """What one event counts towards a PutLogEvents call (its message is shipped with a newline)."""
    return len(event.message.encode()) + 1 + LOG_EVENT_OVERHEAD_BYTES
