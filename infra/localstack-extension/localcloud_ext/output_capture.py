"""Function processes' output, read as it is written and cut into timestamped lines.

One thread reads the output pipes of every function process in LocalStack (a poll loop over all
their descriptors), so a thousand execution environments cost one thread, not a thousand. Each
line is stamped with the wall-clock time it was read: the time the function wrote it, give or
take the reader's latency. A line without its newline yet waits for the rest, or goes out on its
own after PARTIAL_LINE_FLUSH_SECONDS; a line longer than one CloudWatch event is cut in pieces.

Stdlib only; unit tests drive it on pipes of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable

from localcloud_ext.log_shipper import MAX_LINE_BYTES, LogEvent

LOG = logging.getLogger(__name__)

# How long the start of a line waits for its end before it is shipped as a line of its own.
PARTIAL_LINE_FLUSH_SECONDS = 0.5
_READ_BYTES = 65536
# What one pipe may have read per turn of the loop, so a chatty function cannot starve the rest.
_READS_PER_TURN = 4
# What a flush reads at most: the runtime wrote an invocation's output before it posted the
# result, so this is all of it unless a background thread keeps writing.
_FLUSH_LIMIT_BYTES = 16 * 1024 * 1024

LineHandler = Callable[[LogEvent], None]


class CapturedOutput:
    """One function process's combined stdout and stderr, handed on line by line."""

    def __init__(
        self,
        fd: int,
        on_line: LineHandler,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = fd
        self._on_line = on_line
        self._wall_clock = wall_clock
        self._clock = clock
        # Guards the descriptor and the partial line, and keeps lines in the order they were
        # read whichever thread reads them (the reader's loop, or the environment's flush).
        self._lock = threading.Lock()
        self._eof = False
        self._closed = False
        self._partial = bytearray()
        self._partial_written_ms = 0  # when the partial line's first byte was read
        self._partial_since = 0.0  # the same, on the monotonic clock
        os.set_blocking(fd, False)

    def flush(self) -> None:
        """Hand on everything written so far, the line not yet ended too.

        The environment calls it before it writes a platform line (START, END), so that output
        written before it lands before it.
        """
        with self._lock:
            self._read(_FLUSH_LIMIT_BYTES)
            self._hand_on_partial()

    @property
    def has_partial_line(self) -> bool:
        return bool(self._partial)

    def partial_line_due(self) -> float:
        """When (monotonic) the partial line is handed on by itself."""
        return self._partial_since + PARTIAL_LINE_FLUSH_SECONDS

    def read_available(self) -> bool:
        """Read a turn's worth of what the pipe holds; True at end of file."""
        with self._lock:
            self._read(_READS_PER_TURN * _READ_BYTES)
            if self._eof:
                self._hand_on_partial()
            return self._eof

    def hand_on_partial_line_if_due(self, now: float) -> None:
        with self._lock:
            if self._partial and now >= self.partial_line_due():
                self._hand_on_partial()

    def close(self) -> None:
        """Close the descriptor. Only the reader's loop calls it, after it stopped polling it:
        a closed number may at once belong to another process's pipe."""
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(OSError):
                    os.close(self.fd)

    def _read(self, limit: int) -> None:
        read = 0
        while not (self._eof or self._closed) and read < limit:
            try:
                chunk = os.read(self.fd, _READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                return
            read += len(chunk)
            self._cut_lines(chunk)

    def _cut_lines(self, chunk: bytes) -> None:
        now_ms = int(self._wall_clock() * 1000)
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if self._partial:
                self._partial += chunk[start:end]
                self._hand_on_partial()
            else:
                self._hand_on(chunk[start:end], now_ms)
            start = end + 1
        rest = chunk[start:]
        if rest:
            if not self._partial:
                self._partial_written_ms = now_ms
                self._partial_since = self._clock()
            self._partial += rest
            while len(self._partial) > MAX_LINE_BYTES:
                cut = _utf8_boundary(self._partial, MAX_LINE_BYTES)
                self._hand_on(bytes(self._partial[:cut]), self._partial_written_ms)
                del self._partial[:cut]

    def _hand_on_partial(self) -> None:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._hand_on(line, self._partial_written_ms)

    def _hand_on(self, line: bytes, written_ms: int) -> None:
        while line:
            cut = _utf8_boundary(line, MAX_LINE_BYTES) if len(line) > MAX_LINE_BYTES else len(line)
            self._on_line(LogEvent(written_ms, line[:cut].decode(errors="replace")))
            line = line[cut:]


def _utf8_boundary(data: bytes | bytearray, limit: int) -> int:
    """The largest cut at or below `limit` that splits no UTF-8 character."""
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # a continuation byte: back off
        cut -= 1
    return cut or limit


class OutputReader:
    """The one thread that reads every watched pipe (poll, not select: LocalStack may hold more
    than FD_SETSIZE, 1024, descriptors)."""

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall_clock = wall_clock
        self._clock = clock
        self._lock = threading.Lock()  # guards _added and _thread
        self._added: list[CapturedOutput] = []
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def watch(self, fd: int, on_line: LineHandler) -> CapturedOutput:
        """Read `fd` from now on, handing each line to `on_line`; the reader closes `fd` at its
        end of file."""
        capture = CapturedOutput(fd, on_line, self._wall_clock, self._clock)
        with self._lock:
            self._added.append(capture)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambda-output", daemon=True)
                self._thread.start()
        self._wake()
        return capture

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._wake_write, b"\0")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        watched: dict[int, CapturedOutput] = {}
        partial: set[CapturedOutput] = set()  # those holding the start of a line
        while True:
            with self._lock:
                added, self._added = self._added, []
            for capture in added:
                watched[capture.fd] = capture
                poller.register(capture.fd, select.POLLIN)
            try:
                ready = poller.poll(self._timeout_ms(partial))
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    continue
                readable = watched.get(fd)
                if readable is None:
                    continue
                if self._read(readable):
                    poller.unregister(fd)
                    del watched[fd]
                    partial.discard(readable)
                    readable.close()
                elif readable.has_partial_line:
                    partial.add(readable)
            now = self._clock()
            for capture in list(partial):
                self._hand_on_partial_line_if_due(capture, now)
                if not capture.has_partial_line:
                    partial.discard(capture)

    @staticmethod
    def _read(capture: CapturedOutput) -> bool:
        """A turn of reading; True at end of file. A failing line handler costs its lines, never
        the loop: every function's pipe depends on it being read."""
        try:
            return capture.read_available()
        except Exception:
            LOG.exception("handing on the output of descriptor %s failed", capture.fd)
            return False

    @staticmethod
    def _hand_on_partial_line_if_due(capture: CapturedOutput, now: float) -> None:
        try:
            capture.hand_on_partial_line_if_due(now)
        except Exception:
            LOG.exception("handing on the output of descriptor %s failed", capture.fd)

    def _timeout_ms(self, partial: set[CapturedOutput]) -> int:
        """Until the first partial line is due; forever when none waits."""
        if not partial:
            return -1
        due = min(capture.partial_line_due() for capture in partial)
        return max(0, int((due - self._clock()) * 1000) + 1)


_shared: OutputReader | None = None
_shared_lock = threading.Lock()


def shared_reader() -> OutputReader:
    """The process's one reader of function output."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = OutputReader()
        return _shared
