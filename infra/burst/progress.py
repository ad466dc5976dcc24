"""A progress bar on stderr, with no dependency: redrawn in place on a terminal (at most ten
times a second), one line every few seconds otherwise, so a log stays readable."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30
TERMINAL_REDRAW_SECONDS = 0.1
LOG_LINE_SECONDS = 5.0


class ProgressBar:
    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self._label = label
        self._total = max(1, total)
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._terminal = self._stream.isatty()
        self._every = TERMINAL_REDRAW_SECONDS if self._terminal else LOG_LINE_SECONDS
        self._last_drawn = float("-inf")
        self._lock = threading.Lock()
        self._line = ""

    def render(self, done: int, note: str = "") -> str:
        filled = min(WIDTH, WIDTH * done // self._total)
        bar = "#" * filled + "." * (WIDTH - filled)
        return f"{self._label:<9}[{bar}] {done}/{self._total} {note}".rstrip()

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        if not self._enabled:
            return
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_drawn < self._every:
                return
            self._last_drawn = now
            self._line = self.render(done, note)
            if self._terminal:
                self._stream.write("\r\033[K" + self._line)
            else:
                self._stream.write(self._line + "\n")
            self._stream.flush()

    def finish(self, done: int, note: str = "") -> None:
        """The final state, and a newline on a terminal so what follows starts on its own."""
        if not self._enabled:
            return
        self.update(done, note, force=True)
        if self._terminal:
            self._stream.write("\n")
            self._stream.flush()
