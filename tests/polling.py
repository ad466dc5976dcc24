"""Waiting in tests for something the system does in its own time: poll, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(fetch: Callable[[], T], done: Callable[[T], bool], seconds: float, what: str) -> T:
    """Poll `fetch` until `done` holds, or fail the test saying what it waited for."""
    deadline = time.monotonic() + seconds
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"after {seconds:.0f} s, still waiting for {what}; last: {value}")
        time.sleep(0.25)
