"""Fixtures of the unit tests: the in-memory adapters of the app's ports."""

from __future__ import annotations

import pytest

from tests.fakes import InMemoryMetrics, InMemoryTaskQueue, InMemoryTaskStore


@pytest.fixture
def queue() -> InMemoryTaskQueue:
    return InMemoryTaskQueue()


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


@pytest.fixture
def metrics() -> InMemoryMetrics:
    return InMemoryMetrics()
