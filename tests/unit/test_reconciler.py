"""The reconciler: PostgreSQL is the truth, the queue is put right when it lost messages."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.model import NewTask, TaskMessage
from chalicelib.reconciler import ABANDONED_PENDING_SECONDS, IDLE_MARGIN_SECONDS, Reconciler
from chalicelib.settings import Backoff
from tests.fakes import InMemoryTaskQueue, InMemoryTaskStore

VISIBILITY_S = 30
BACKOFF = Backoff(base_s=1, max_s=20)
IDLE_LONG_ENOUGH = timedelta(seconds=VISIBILITY_S + IDLE_MARGIN_SECONDS + 5)


def long_ago() -> datetime:
    """Long enough ago for a message to have come back, reckoned when the test runs (not when
    the module was imported: in the whole suite, minutes earlier)."""
    return datetime.now(UTC) - IDLE_LONG_ENOUGH


def committed(store: InMemoryTaskStore, accepted_at: datetime | None = None) -> NewTask:
    task = NewTask(uuid.uuid4(), "echo", {}, None, "req-1", accepted_at or long_ago())
    store.admit([task])
    store.commit([task.id])
    return task


@pytest.fixture
def queue() -> InMemoryTaskQueue:
    return InMemoryTaskQueue(visibility_timeout_s=VISIBILITY_S, max_receives=5)


@pytest.fixture
def reconciler(store: InMemoryTaskStore, queue: InMemoryTaskQueue) -> Reconciler:
    return Reconciler(store, queue, BACKOFF)


def test_tasks_the_queue_lost_are_sent_again_once(
    reconciler: Reconciler, store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    lost = [committed(store) for _ in range(3)]  # the queue holds none of their messages

    first = reconciler.run()
    second = reconciler.run()  # their messages are in the queue now

    assert (first.unfinished, first.in_queue, first.resent) == (3, 0, 3)
    assert sorted(m.task_id for m in queue.sent) == sorted(t.id for t in lost)
    assert second.resent == 0


def test_a_backlog_the_queue_still_holds_is_left_alone(
    reconciler: Reconciler, store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    waiting = [committed(store) for _ in range(3)]
    queue.sent = [TaskMessage.of(t) for t in waiting]  # old, but still in the queue

    result = reconciler.run()

    assert result.resent == 0 and len(queue.sent) == 3


def test_tasks_touched_recently_are_not_resent(
    reconciler: Reconciler, store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    committed(store, accepted_at=datetime.now(UTC))  # its message may still be on its way

    assert reconciler.run().resent == 0 and queue.sent == []


def test_a_task_that_used_every_receive_is_failed_with_the_reason_not_resent(
    reconciler: Reconciler, store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    task = committed(store)
    store.rows[task.id] = replace(
        store.rows[task.id], status="running", attempts=5, started_at=long_ago()
    )

    result = reconciler.run()

    row = store.rows[task.id]
    assert (result.failed, result.resent) == (1, 0)
    assert row.status == "failed" and row.error and "timed out" in row.error
    assert queue.sent == []


def test_abandoned_pending_tasks_are_withdrawn(
    reconciler: Reconciler, store: InMemoryTaskStore
) -> None:
    old = datetime.now(UTC) - timedelta(seconds=ABANDONED_PENDING_SECONDS + 1)
    abandoned = NewTask(uuid.uuid4(), "echo", {}, None, "req-1", old)
    young = NewTask(uuid.uuid4(), "echo", {}, None, "req-2", datetime.now(UTC))
    store.admit([abandoned, young])

    assert reconciler.run().withdrawn == 1
    assert set(store.rows) == {young.id}


def test_the_idle_time_waits_for_the_longest_way_back_to_the_queue(
    store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    # A backoff cap above the visibility timeout: a record may come back that much later.
    reconciler = Reconciler(store, queue, Backoff(base_s=1, max_s=VISIBILITY_S + 600))
    committed(store)

    assert reconciler.run().resent == 0


def test_tasks_untouched_since_the_queue_was_made_anew_are_resent_at_once(
    reconciler: Reconciler, store: InMemoryTaskStore, queue: InMemoryTaskQueue
) -> None:
    # LocalStack came back without its queues: the deploy created this one a second ago.
    queue.settings = replace(queue.settings, created_at=datetime.now(UTC))
    recent = committed(store, accepted_at=datetime.now(UTC) - timedelta(seconds=5))

    result = reconciler.run()

    assert result.resent == 1 and [m.task_id for m in queue.sent] == [recent.id]
