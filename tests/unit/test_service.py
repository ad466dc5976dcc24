"""Accepting tasks: stored before enqueued, committed only when all of a request's tasks are
enqueued, idempotent, and a request that cannot finish withdrawn whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    RequestNotFinished,
    TaskNotFound,
)
from chalicelib.model import NewTask, TaskMessage, TaskRequest
from chalicelib.service import ABANDONED_AFTER_SECONDS, START_BUDGET_MS, TaskService
from tests.fakes import FixedDeadline, InMemoryMetrics, InMemoryTaskQueue, InMemoryTaskStore


@pytest.fixture
def service(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> TaskService:
    return TaskService(queue, store, metrics)


def test_an_accepted_task_is_stored_and_enqueued_with_its_correlation_id(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    submission = service.submit_one(TaskRequest("echo", {"x": 1}), "req-1")

    assert submission.outcome == "accepted"
    [message] = queue.sent
    assert (message.task_id, message.correlation_id, message.payload) == (
        submission.task.id,
        "req-1",
        {"x": 1},
    )
    assert store.rows[submission.task.id].status == "queued"


def test_a_repeated_idempotency_key_enqueues_nothing_more(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    first = service.submit_one(TaskRequest("echo", {}, "k"), "req-1")
    again = service.submit_one(TaskRequest("echo", {}, "k"), "req-2")

    assert again.outcome == "duplicate"
    assert again.task.id == first.task.id
    assert len(queue.sent) == 1 and len(store.rows) == 1


def test_an_idempotency_key_reused_for_another_task_conflicts(
    service: TaskService, queue: InMemoryTaskQueue
) -> None:
    service.submit_one(TaskRequest("echo", {}, "k"), "req-1")

    with pytest.raises(IdempotencyConflict, match="'k'"):
        service.submit_one(TaskRequest("sleep", {"ms": 1}, "k"), "req-2")
    assert len(queue.sent) == 1


def test_a_task_sqs_refuses_is_not_kept(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    queue.down = True

    with pytest.raises(RequestNotFinished, match="nothing of this request was kept"):
        service.submit_one(TaskRequest("echo", {}), "req-1")
    assert store.rows == {}


def test_a_store_outage_enqueues_nothing(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    store.down = True

    with pytest.raises(DependencyUnavailable):
        service.submit([TaskRequest("echo", {})], "req-1")
    assert queue.sent == []


def test_a_batch_reports_each_item(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    service.submit_one(TaskRequest("echo", {}, "seen"), "req-0")
    requests = [
        TaskRequest("echo", {"i": 1}),
        TaskRequest("echo", {}, "seen"),
        TaskRequest("fail", {}, "seen-but-different"),
    ]
    service.submit_one(TaskRequest("echo", {}, "seen-but-different"), "req-0")

    outcomes = [s.outcome for s in service.submit(requests, "req-1")]

    assert outcomes == ["accepted", "duplicate", "conflict"]
    assert len(queue.sent) == 3  # the two earlier tasks and the one new one


def test_a_batch_is_withdrawn_whole_when_sqs_refuses_one_of_its_tasks(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    ids = iter(uuid.UUID(int=i) for i in range(1, 4))
    service = TaskService(queue, store, metrics, new_id=lambda: next(ids))
    queue.refuse = {uuid.UUID(int=2)}

    with pytest.raises(RequestNotFinished, match="1 of its tasks could not be enqueued"):
        service.submit([TaskRequest("echo", {})] * 3, "req-1")

    # Task 1's message was sent: its row is gone, so a worker drops it (NOT_ACCEPTED).
    assert store.rows == {}
    assert metrics.total("TasksAccepted") == 0


def test_a_request_with_too_little_time_left_changes_nothing(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    with pytest.raises(RequestNotFinished, match="ms of this request's time"):
        service.submit([TaskRequest("echo", {})], "req-1", FixedDeadline(START_BUDGET_MS - 1))

    assert store.rows == {} and queue.sent == []


def test_a_request_whose_time_runs_out_while_sending_is_withdrawn_whole(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    deadline = FixedDeadline(10_000)

    def time_passes(message: TaskMessage) -> None:
        if len(queue.sent) == 5:
            deadline.ms = 0

    queue.before_each = time_passes

    with pytest.raises(RequestNotFinished, match="5 of its tasks could not be enqueued"):
        service.submit([TaskRequest("echo", {"i": i}) for i in range(10)], "req-1", deadline)

    assert len(queue.sent) == 5 and store.rows == {}


def test_the_tasks_are_stored_before_their_messages_and_committed_after(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    seen: list[str] = []
    queue.before_each = lambda m: seen.append(store.rows[m.task_id].status)

    [submission] = service.submit([TaskRequest("echo", {})], "req-1")

    assert seen == ["pending"]  # a worker seeing the message now would wait
    assert store.rows[submission.task.id].status == "queued"
    assert submission.task.status == "queued"


def test_a_retry_while_the_first_request_still_runs_is_refused_and_keeps_nothing_new(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    first = NewTask(uuid.uuid4(), "echo", {}, "k", "req-0", datetime.now(UTC))
    store.admit([first])  # pending: its request has not answered yet

    with pytest.raises(RequestNotFinished, match="still runs"):
        service.submit([TaskRequest("echo", {}, "k"), TaskRequest("echo", {}, "new")], "req-1")

    assert set(store.rows) == {first.id} and queue.sent == []


def test_a_retry_takes_over_the_tasks_of_a_request_that_died_without_an_answer(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    now = datetime.now(UTC)
    service = TaskService(queue, store, metrics, clock=lambda: now)
    abandoned = NewTask(
        uuid.uuid4(), "echo", {}, "k", "req-0", now - timedelta(seconds=ABANDONED_AFTER_SECONDS + 1)
    )
    store.admit([abandoned])

    [submission] = service.submit([TaskRequest("echo", {}, "k")], "req-1")

    assert (submission.outcome, submission.task.id) == ("accepted", abandoned.id)
    assert store.rows[abandoned.id].status == "queued"
    assert [m.task_id for m in queue.sent] == [abandoned.id]
    assert metrics.total("TasksAccepted") == 1


def test_the_same_batch_sent_twice_gives_each_task_once(
    service: TaskService, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    batch = [TaskRequest("echo", {"i": i}, f"key-{i}") for i in range(20)]

    first = service.submit(batch, "req-1")
    again = service.submit(batch, "req-2")

    assert [s.outcome for s in again] == ["duplicate"] * 20
    assert [s.task.id for s in again] == [s.task.id for s in first]
    assert len(store.rows) == 20 and len(queue.sent) == 20


def test_an_unknown_task_is_not_found(service: TaskService) -> None:
    with pytest.raises(TaskNotFound):
        service.get(uuid.uuid4())


def test_status_counts_every_status_and_both_queues(
    service: TaskService, queue: InMemoryTaskQueue
) -> None:
    service.submit([TaskRequest("echo", {})] * 2, "req-1")
    queue.dead_letters = 1

    status = service.status()

    assert status["tasks"] == {
        "pending": 0,
        "queued": 2,
        "running": 0,
        "retrying": 0,
        "done": 0,
        "failed": 0,
    }
    assert status["queue"]["visible"] == 2
    assert status["dead_letter_queue"]["visible"] == 1
    assert status["processed_last_minute"] == 0


def test_health_names_the_dependency_that_is_down(
    service: TaskService, store: InMemoryTaskStore
) -> None:
    store.down = True

    checks = service.health()

    assert checks["queue"] == "ok"
    assert "PostgreSQL" in checks["database"]


# --- metrics: TasksAccepted counts what was accepted now, nothing else --------------------------


def test_an_accepted_task_is_counted_at_its_acceptance_time_and_flushed(
    service: TaskService, metrics: InMemoryMetrics
) -> None:
    submission = service.submit_one(TaskRequest("echo", {}), "req-1")

    [sample] = metrics.samples
    assert (sample.name, sample.value, sample.unit) == ("TasksAccepted", 1, "Count")
    assert sample.at == submission.task.accepted_at
    assert metrics.flushes == 1  # once at the end of the request, never per task


def test_duplicates_conflicts_and_withdrawn_requests_are_not_counted(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    ids = iter(uuid.UUID(int=i) for i in range(1, 10))
    service = TaskService(queue, store, metrics, new_id=lambda: next(ids))
    service.submit([TaskRequest("echo", {}, "seen"), TaskRequest("echo", {}, "other")], "req-0")
    metrics.samples.clear()

    outcomes = [
        s.outcome
        for s in service.submit(
            [
                TaskRequest("echo", {}, "seen"),  # id 3: duplicate
                TaskRequest("fail", {}, "other"),  # id 4: conflict
                TaskRequest("echo", {"i": 1}),  # id 5: accepted
                TaskRequest("echo", {"i": 2}),  # id 6: accepted
            ],
            "req-1",
        )
    ]
    queue.refuse = {uuid.UUID(int=8)}
    with pytest.raises(RequestNotFinished):
        service.submit([TaskRequest("echo", {"i": 3}), TaskRequest("echo", {"i": 4})], "req-2")

    assert outcomes == ["duplicate", "conflict", "accepted", "accepted"]
    assert metrics.totals() == {"TasksAccepted": 2}


def test_a_batch_counts_each_task_and_flushes_once(
    service: TaskService, metrics: InMemoryMetrics
) -> None:
    service.submit([TaskRequest("echo", {"i": i}) for i in range(25)], "req-1")

    assert metrics.values("TasksAccepted") == [1] * 25
    assert metrics.flushes == 1


def test_nothing_is_counted_when_the_store_is_down(
    service: TaskService, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    store.down = True

    with pytest.raises(DependencyUnavailable):
        service.submit_one(TaskRequest("echo", {}), "req-1")
    assert metrics.samples == []


def test_a_task_sqs_refuses_is_not_counted(
    service: TaskService, queue: InMemoryTaskQueue, metrics: InMemoryMetrics
) -> None:
    queue.down = True

    with pytest.raises(RequestNotFinished):
        service.submit_one(TaskRequest("echo", {}), "req-1")
    assert metrics.totals() == {}
