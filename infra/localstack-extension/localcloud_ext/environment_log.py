"""One execution environment's log, as Lambda writes it: each event when it happens, with its time.

The function's output (from `output_capture`) and the platform's lines (INIT_START, START, END,
REPORT) meet here, in the order they happened, and go to the environment's log stream at once.
Timestamps never go backwards within a stream (CloudWatch wants each batch in order). A record
keeps the tail of one phase (an invocation, or an init) for the invoke's `LogResult`.

Stdlib only.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from localcloud_ext import report
from localcloud_ext.log_shipper import DiscardingSink, LogEvent, LogSink

# What the invoke's LogResult shows: the last 4 KB of the invocation's log (AWS's limit).
LOG_RESULT_TAIL_BYTES = 4096
# What one environment keeps of its whole output, for LocalStack's diagnostics (get_logs).
ENVIRONMENT_LOG_LIMIT = 256 * 1024


class BoundedText:
    """The tail of a text written in parts: at least `limit` characters of it, whole parts."""

    def __init__(self, limit: int) -> None:
        self._parts: collections.deque[str] = collections.deque()
        self._size = 0
        self._limit = limit

    def append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        while self._parts and self._size - len(self._parts[0]) >= self._limit:
            self._size -= len(self._parts.popleft())

    def text(self) -> str:
        return "".join(self._parts)


class EnvironmentLog:
    """Orders, stamps and forwards everything one environment logs."""

    def __init__(
        self, sink: LogSink | None = None, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._sink = sink or DiscardingSink()
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._last_ms = 0
        self._record: BoundedText | None = None
        self._output = BoundedText(ENVIRONMENT_LOG_LIMIT)

    def now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def output(self, event: LogEvent) -> None:
        """A line the function wrote (the output reader calls this)."""
        with self._lock:
            self._output.append(event.message + "\n")
            self._write(event)

    def platform(self, message: str, at_ms: int | None = None) -> None:
        """A line Lambda writes itself, at `at_ms` (now by default)."""
        with self._lock:
            self._write(LogEvent(self.now_ms() if at_ms is None else at_ms, message))

    def open_record(self) -> None:
        """Start keeping the tail of what is logged from now on (one phase's log)."""
        with self._lock:
            self._record = BoundedText(LOG_RESULT_TAIL_BYTES)

    def close_record(self) -> str:
        """The tail of what was logged since `open_record`, one line per event."""
        with self._lock:
            record, self._record = self._record, None
        return record.text() if record is not None else ""

    def start_invocation(self, request_id: str, version: str) -> int:
        """Log START now, as the invocation is handed to the runtime; its time (ms)."""
        self.open_record()
        started_ms = self.now_ms()
        self.platform(report.start_line(request_id, version), started_ms)
        return started_ms

    def end_invocation(
        self,
        started_ms: int,
        invocation_report: report.InvocationReport,
        platform_line: str = "",
    ) -> str:
        """Log END and REPORT as the result arrived (`platform_line` first, a timeout's or a
        crash's), and return the invocation's tail, START to REPORT (the invoke's LogResult).

        END is stamped START plus the measured duration, so START..END spans Duration.
        """
        if platform_line:
            self.platform(platform_line)
        ended_ms = started_ms + round(invocation_report.duration_ms)
        self.platform(report.end_line(invocation_report.request_id), ended_ms)
        self.platform(invocation_report.line(), ended_ms)
        return self.close_record()

    def diagnostics(self) -> str:
        """The tail of the function's whole output (LocalStack's get_logs)."""
        with self._lock:
            return self._output.text()

    def _write(self, event: LogEvent) -> None:
        if event.timestamp_ms < self._last_ms:
            event = LogEvent(self._last_ms, event.message)
        self._last_ms = event.timestamp_ms
        if self._record is not None:
            self._record.append(event.message + "\n")
        self._sink.write(event)
