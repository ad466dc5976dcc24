"""One contract for every TaskStore: tests/unit runs it against the in-memory store,
tests/integration against PostgreSQL. A subclass provides the `store` fixture."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chalicelib.model import NewTask, TaskMessage
from chalicelib.ports import TaskStore


def new_task(key: str | None = None, task_type: str = "echo", **payload: object) -> NewTask:
    return NewTask(
        id=uuid.uuid4(),
        type=task_type,
        payload=dict(payload),
        idempotency_key=key,
        correlation_id="req-1",
        accepted_at=datetime.now(UTC),
    )


class TaskStoreContract:
    def test_admitted_tasks_are_queued(self, store: TaskStore) -> None:
        task = new_task(n=1)

        [admission] = store.admit([task])

        assert admission.created
        row = store.get(task.id)
        assert row is not None
        assert (row.status, row.attempts, row.payload, row.correlation_id) == (
            "queued",
            0,
            {"n": 1},
            "req-1",
        )

    def test_a_repeated_idempotency_key_returns_the_earlier_task(self, store: TaskStore) -> None:
        key = f"key-{uuid.uuid4()}"
        first, second = new_task(key), new_task(key)

        store.admit([first])
        [admission] = store.admit([second])

        assert not admission.created
        assert admission.task.id == first.id
        assert store.get(second.id) is None

    def test_withdraw_removes_only_queued_tasks(self, store: TaskStore) -> None:
        queued, running = new_task(), new_task()
        store.admit([queued, running])
        store.start_attempt(TaskMessage.of(running), "req-w")

        store.withdraw([queued.id, running.id])

        assert store.get(queued.id) is None
        assert store.get(running.id) is not None

    def test_an_attempt_then_finish_makes_the_task_done(self, store: TaskStore) -> None:
        task = new_task()
        store.admit([task])

        assert store.start_attempt(TaskMessage.of(task), "req-w")
        store.finish(task.id, {"ok": True})

        row = store.get(task.id)
        assert row is not None
        assert (row.status, row.attempts, row.result, row.worker_request_id) == (
            "done",
            1,
            {"ok": True},
            "req-w",
        )
        assert row.started_at is not None and row.finished_at is not None
        assert row.accepted_at <= row.started_at <= row.finished_at

    def test_a_redelivery_of_a_done_task_changes_nothing(self, store: TaskStore) -> None:
        task = new_task()
        store.admit([task])
        store.start_attempt(TaskMessage.of(task), "req-1")
        store.finish(task.id, {"ok": True})
        before = store.get(task.id)

        assert not store.start_attempt(TaskMessage.of(task), "req-2")
        store.finish(task.id, {"ok": "again"})

        assert store.get(task.id) == before

    def test_failures_retry_then_fail_on_the_last_receive(self, store: TaskStore) -> None:
        task = new_task(task_type="fail")
        store.admit([task])

        store.start_attempt(TaskMessage.of(task), "req-1")
        store.record_failure(task.id, "boom", final=False)
        retrying = store.get(task.id)
        store.start_attempt(TaskMessage.of(task), "req-2")
        store.record_failure(task.id, "boom", final=True)
        failed = store.get(task.id)

        assert retrying is not None and failed is not None
        assert (retrying.status, retrying.finished_at) == ("retrying", None)
        assert (failed.status, failed.attempts, failed.error) == ("failed", 2, "boom")
        assert failed.finished_at is not None
        assert not store.start_attempt(TaskMessage.of(task), "req-3")

    def test_an_attempt_creates_a_missing_row(self, store: TaskStore) -> None:
        task = new_task()

        assert store.start_attempt(TaskMessage.of(task), "req-1")

        row = store.get(task.id)
        assert row is not None and (row.status, row.attempts) == ("running", 1)

    def test_counts_and_recently_finished(self, store: TaskStore) -> None:
        before = store.count_by_status()
        finished_before = store.finished_since(60)
        done, queued = new_task(), new_task()
        store.admit([done, queued])
        store.start_attempt(TaskMessage.of(done), "req-1")
        store.finish(done.id, {})

        counts = store.count_by_status()

        assert counts.get("done", 0) == before.get("done", 0) + 1
        assert counts.get("queued", 0) == before.get("queued", 0) + 1
        assert store.finished_since(60) == finished_before + 1
