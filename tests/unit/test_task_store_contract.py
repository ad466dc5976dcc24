"""The TaskStore contract, against the in-memory store the other unit tests rely on."""

from __future__ import annotations

from datetime import datetime

import pytest

from chalicelib.model import TaskMessage
from chalicelib.ports import TaskStore
from tests.contract import TaskStoreContract, new_task
from tests.fakes import InMemoryTaskStore


class FinishOutcomeContract:
    """What finish and record_failure answer: the worker counts a task done or failed only
    when its own write made it so. (Belongs in tests/contract.py, so that PostgreSQL runs it
    too; kept here until that file can change.)"""

    def test_finish_returns_the_stored_finish_time(self, store: TaskStore) -> None:
        task = new_task()
        store.admit([task])
        store.start_attempt(TaskMessage.of(task), "req-1")

        finished_at = store.finish(task.id, {"ok": True})

        row = store.get(task.id)
        assert row is not None and isinstance(finished_at, datetime)
        assert finished_at == row.finished_at

    def test_finishing_a_task_that_is_not_running_changes_nothing_and_says_so(
        self, store: TaskStore
    ) -> None:
        task = new_task()
        store.admit([task])
        store.start_attempt(TaskMessage.of(task), "req-1")
        store.finish(task.id, {"ok": True})

        assert store.finish(task.id, {"ok": "again"}) is None
        assert not store.record_failure(task.id, "late", final=True)

    def test_record_failure_says_whether_it_recorded(self, store: TaskStore) -> None:
        task = new_task(task_type="fail")
        store.admit([task])

        assert not store.record_failure(task.id, "not started", final=False)  # still queued
        store.start_attempt(TaskMessage.of(task), "req-1")
        assert store.record_failure(task.id, "boom", final=False)
        store.start_attempt(TaskMessage.of(task), "req-2")
        assert store.record_failure(task.id, "boom", final=True)


class TestInMemoryTaskStore(TaskStoreContract, FinishOutcomeContract):
    @pytest.fixture
    def store(self) -> InMemoryTaskStore:
        return InMemoryTaskStore()
