"""Timers that share one thread: `threading.Timer`'s interface without a thread per timer.

LocalStack's ExecutionEnvironment arms a `threading.Timer` after every invocation (the keepalive
that retires an idle environment after LAMBDA_KEEPALIVE_MS) and one during each start: a thread
per idle environment, a thousand threads at full scale. `SharedTimer` keeps the interface LocalStack
uses (`Timer(interval, function)`, `start`, `cancel`) on one scheduler thread; a timer that fires
runs its function on a short-lived thread of its own, so a slow callback (stopping an
environment) never delays the others.

Stdlib only.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any


class Scheduler:
    """Due times in a heap, one thread waiting for the earliest."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._clock = clock
        self._run = run or _on_own_thread
        self._heap: list[tuple[float, int, SharedTimer]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, timer: SharedTimer) -> None:
        with self._condition:
            heapq.heappush(
                self._heap, (self._clock() + timer.interval, next(self._sequence), timer)
            )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="shared-timers", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def pending(self) -> int:
        with self._condition:
            return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def run_due(self) -> float | None:
        """Fire every timer that is due; seconds until the next one (None: none left)."""
        due: list[SharedTimer] = []
        with self._condition:
            now = self._clock()
            while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
                _, _, timer = heapq.heappop(self._heap)
                if not timer.cancelled:
                    due.append(timer)
            wait = self._heap[0][0] - now if self._heap else None
        for timer in due:
            self._run(timer.fire)
        return wait

    def _loop(self) -> None:
        while True:
            wait = self.run_due()
            with self._condition:
                if not self._heap or wait is None or wait > 0:
                    self._condition.wait(timeout=wait)


def _on_own_thread(function: Callable[[], None]) -> None:
    threading.Thread(target=function, name="shared-timer-fired", daemon=True).start()


_scheduler = Scheduler()


class SharedTimer:
    """Stands in for threading.Timer(interval, function, args, kwargs)."""

    def __init__(
        self,
        interval: float,
        function: Callable[..., Any],
        args: Any = None,
        kwargs: Any = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.interval = float(interval)
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})
        self.cancelled = False
        self._scheduler = scheduler or _scheduler

    def start(self) -> None:
        self._scheduler.add(self)

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.function(*self.args, **self.kwargs)
