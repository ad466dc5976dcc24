"""One contract for every TaskStore: tests/unit runs it against the in-memory store,
tests/integration against PostgreSQL. A subclass provides the `store` fixture."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from chalicelib.model import Attempt, NewTask, TaskMessage
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


def accepted(store: TaskStore, *tasks: NewTask) -> None:
    """Admitted and committed, as the API leaves a task it answered 202 for."""
    store.admit(list(tasks))
    assert store.commit([t.id for t in tasks]) == len(tasks)


class TaskStoreContract:
    def test_admitted_tasks_are_pending_until_committed(self, store: TaskStore) -> None:
        task = new_task(n=1)

        [admission] = store.admit([task])
        pending = store.get(task.id)
        committed = store.commit([task.id])

        assert admission.created and admission.task.status == "pending"
        row = store.get(task.id)
        assert pending is not None and pending.status == "pending"
        assert row is not None and committed == 1
        assert (row.status, row.attempts, row.payload, row.correlation_id) == (
            "queued",
            0,
            {"n": 1},
            "req-1",
        )

    def test_commit_counts_only_pending_tasks(self, store: TaskStore) -> None:
        task, gone = new_task(), new_task()
        store.admit([task, gone])
        store.withdraw([gone.id])

        assert store.commit([task.id, gone.id]) == 1
        assert store.commit([task.id]) == 0  # committed already

    def test_a_pending_task_is_not_started_and_a_missing_one_was_not_accepted(
        self, store: TaskStore
    ) -> None:
        pending, missing = new_task(), new_task()
        store.admit([pending])

        assert store.start_attempt(TaskMessage.of(pending), "req-w") is Attempt.UNCOMMITTED
        assert store.start_attempt(TaskMessage.of(missing), "req-w") is Attempt.NOT_ACCEPTED
        assert store.get(missing.id) is None

    def test_a_repeated_idempotency_key_returns_the_earlier_task(self, store: TaskStore) -> None:
        key = f"key-{uuid.uuid4()}"
        first, second = new_task(key), new_task(key)

        store.admit([first])
        [admission] = store.admit([second])

        assert not admission.created
        assert admission.task.id == first.id
        assert store.get(second.id) is None

    def test_withdraw_removes_only_pending_tasks(self, store: TaskStore) -> None:
        pending, committed = new_task(), new_task()
        store.admit([pending])
        accepted(store, committed)

        store.withdraw([pending.id, committed.id])

        assert store.get(pending.id) is None
        assert store.get(committed.id) is not None

    def test_an_attempt_then_finish_makes_the_task_done(self, store: TaskStore) -> None:
        task = new_task()
        accepted(store, task)

        assert store.start_attempt(TaskMessage.of(task), "req-w") is Attempt.STARTED
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
        accepted(store, task)
        store.start_attempt(TaskMessage.of(task), "req-1")
        store.finish(task.id, {"ok": True})
        before = store.get(task.id)

        assert store.start_attempt(TaskMessage.of(task), "req-2") is Attempt.FINISHED
        store.finish(task.id, {"ok": "again"})

        assert store.get(task.id) == before

    def test_failures_retry_then_fail_on_the_last_receive(self, store: TaskStore) -> None:
        task = new_task(task_type="fail")
        accepted(store, task)

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
        assert store.start_attempt(TaskMessage.of(task), "req-3") is Attempt.FINISHED

    def test_counts_and_recently_finished(self, store: TaskStore) -> None:
        before = store.count_by_status()
        finished_before = store.finished_since(60)
        done, queued = new_task(), new_task()
        accepted(store, done, queued)
        store.start_attempt(TaskMessage.of(done), "req-1")
        store.finish(done.id, {})

        counts = store.count_by_status()

        assert counts.get("done", 0) == before.get("done", 0) + 1
        assert counts.get("queued", 0) == before.get("queued", 0) + 1
        assert store.finished_since(60) == finished_before + 1

    # What finish and record_failure answer: the worker counts a task done or failed only
    # when its own write made it so.
    def test_finish_returns_the_stored_finish_time(self, store: TaskStore) -> None:
        task = new_task()
        accepted(store, task)
        store.start_attempt(TaskMessage.of(task), "req-1")

        finished_at = store.finish(task.id, {"ok": True})

        row = store.get(task.id)
        assert row is not None and isinstance(finished_at, datetime)
        assert finished_at == row.finished_at

    def test_finishing_a_task_that_is_not_running_changes_nothing_and_says_so(
        self, store: TaskStore
    ) -> None:
        task = new_task()
        accepted(store, task)
        store.start_attempt(TaskMessage.of(task), "req-1")
        store.finish(task.id, {"ok": True})

        assert store.finish(task.id, {"ok": "again"}) is None
        assert not store.record_failure(task.id, "late", final=True)

    def test_record_failure_says_whether_it_recorded(self, store: TaskStore) -> None:
        task = new_task(task_type="fail")
        accepted(store, task)

        assert not store.record_failure(task.id, "not started", final=False)  # not started
        store.start_attempt(TaskMessage.of(task), "req-1")
        assert store.record_failure(task.id, "boom", final=False)
        store.start_attempt(TaskMessage.of(task), "req-2")
        assert store.record_failure(task.id, "boom", final=True)

    # --- the reconciler's side
    def test_idle_tasks_are_the_unfinished_ones_nothing_touched_lately(
        self, store: TaskStore
    ) -> None:
        old = datetime.now(UTC) - timedelta(hours=1)
        idle, started, done = (replace(new_task(), accepted_at=old) for _ in range(3))
        recent, pending = new_task(), replace(new_task(), accepted_at=old)
        accepted(store, idle, started, done, recent)
        store.admit([pending])
        store.start_attempt(TaskMessage.of(started), "req-1")
        store.start_attempt(TaskMessage.of(done), "req-1")
        store.finish(done.id, {})

        ten_minutes_ago = datetime.now(UTC) - timedelta(seconds=600)
        ids = {t.id for t in store.idle_tasks(ten_minutes_ago, 100_000)}

        assert idle.id in ids
        assert not ids & {started.id, done.id, recent.id, pending.id}

    def test_a_requeued_task_is_not_idle_until_the_time_passes_again(
        self, store: TaskStore
    ) -> None:
        task = replace(new_task(), accepted_at=datetime.now(UTC) - timedelta(hours=1))
        accepted(store, task)

        store.mark_requeued([task.id])

        ten_minutes_ago = datetime.now(UTC) - timedelta(seconds=600)
        assert task.id not in {t.id for t in store.idle_tasks(ten_minutes_ago, 100_000)}

    def test_failing_unfinished_tasks_leaves_finished_ones(self, store: TaskStore) -> None:
        stuck, done = new_task(), new_task()
        accepted(store, stuck, done)
        store.start_attempt(TaskMessage.of(done), "req-1")
        store.finish(done.id, {"ok": True})

        changed = store.fail_unfinished([stuck.id, done.id], "timed out")

        row, finished = store.get(stuck.id), store.get(done.id)
        assert changed == 1
        assert row is not None and (row.status, row.error) == ("failed", "timed out")
        assert finished is not None and finished.status == "done"

    def test_abandoned_pending_tasks_are_withdrawn(self, store: TaskStore) -> None:
        old = datetime.now(UTC) - timedelta(hours=1)
        abandoned, young, committed = replace(new_task(), accepted_at=old), new_task(), new_task()
        store.admit([abandoned, young])
        accepted(store, replace(committed, accepted_at=old))

        withdrawn = store.withdraw_abandoned(600)

        assert withdrawn >= 1
        assert store.get(abandoned.id) is None
        assert store.get(young.id) is not None and store.get(committed.id) is not None

    def test_unfinished_counts_committed_tasks_not_done_or_failed(self, store: TaskStore) -> None:
        before = store.unfinished_count()
        queued, running, done, pending = new_task(), new_task(), new_task(), new_task()
        accepted(store, queued, running, done)
        store.admit([pending])
        store.start_attempt(TaskMessage.of(running), "req-1")
        store.start_attempt(TaskMessage.of(done), "req-1")
        store.finish(done.id, {})

        assert store.unfinished_count() == before + 2
