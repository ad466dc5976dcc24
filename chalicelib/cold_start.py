"""Cold starts, counted by the app itself as Powertools' ColdStart metric does: AWS publishes
no cold-start metric (only the Init Duration of the REPORT log line), and counting in the app
works the same on AWS and in the local cloud.

InitDuration is the time from this module's import (the app's code starting to load, early in
the execution environment's init) to the environment's first invocation. On a cold start the
first invocation follows the init at once, so this is the part of Lambda's Init Duration the
app's own code costs, without the runtime's bootstrap before it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chalicelib.ports import COLD_STARTS, INIT_DURATION, Metrics

LOADED_AT = time.monotonic()


class ColdStartRecorder:
    def __init__(
        self,
        metrics: Callable[[], Metrics],
        *,
        loaded_at: float = LOADED_AT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics  # resolved at the first invocation: settings load lazily
        self._loaded_at = loaded_at
        self._clock = clock
        self._lock = threading.Lock()
        self._started = False

    def invocation_started(self) -> None:
        """Call at the start of every invocation: the first one records the cold start."""
        if self._started:  # the hot path: one attribute read
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        metrics = self._metrics()
        metrics.add(COLD_STARTS, 1, "Count")
        metrics.add(INIT_DURATION, (self._clock() - self._loaded_at) * 1000, "Milliseconds")
