"""Accepting tasks: stored before enqueued, idempotent, and nothing kept that SQS refused."""

from __future__ import annotations

import uuid

import pytest

from chalicelib.errors import DependencyUnavailable, IdempotencyConflict, TaskNotFound
from chalicelib.model import TaskRequest
from chalicelib.service import TaskService
from tests.fakes import InMemoryMetrics, InMemoryTaskQueue, InMemoryTaskStore


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

    with pytest.raises(DependencyUnavailable):
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


def test_a_batch_withdraws_only_what_sqs_refused(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    ids = iter(uuid.UUID(int=i) for i in range(1, 4))
    service = TaskService(queue, store, metrics, new_id=lambda: next(ids))
    queue.refuse = {uuid.UUID(int=2)}

    outcomes = [s.outcome for s in service.submit([TaskRequest("echo", {})] * 3, "req-1")]

    assert outcomes == ["accepted", "rejected", "accepted"]
    assert sorted(r.id.int for r in store.rows.values()) == [1, 3]


def test_an_unknown_task_is_not_found(service: TaskService) -> None:
    with pytest.raises(TaskNotFound):
        service.get(uuid.uuid4())


def test_status_counts_every_status_and_both_queues(
    service: TaskService, queue: InMemoryTaskQueue
) -> None:
    service.submit([TaskRequest("echo", {})] * 2, "req-1")
    queue.dead_letters = 1

    status = service.status()

    assert status["tasks"] == {"queued": 2, "running": 0, "retrying": 0, "done": 0, "failed": 0}
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


def test_duplicates_conflicts_and_rejected_tasks_are_not_counted(
    queue: InMemoryTaskQueue, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    ids = iter(uuid.UUID(int=i) for i in range(1, 10))
    service = TaskService(queue, store, metrics, new_id=lambda: next(ids))
    service.submit([TaskRequest("echo", {}, "seen"), TaskRequest("echo", {}, "other")], "req-0")
    metrics.samples.clear()
    queue.refuse = {uuid.UUID(int=4)}

    outcomes = [
        s.outcome
        for s in service.submit(
            [
                TaskRequest("echo", {}, "seen"),  # id 3: duplicate
                TaskRequest("echo", {}),  # id 4: refused by SQS
                TaskRequest("fail", {}, "other"),  # id 5: conflict
                TaskRequest("echo", {"i": 1}),  # id 6: accepted
                TaskRequest("echo", {"i": 2}),  # id 7: accepted
            ],
            "req-1",
        )
    ]

    assert outcomes == ["duplicate", "rejected", "conflict", "accepted", "accepted"]
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

    with pytest.raises(DependencyUnavailable):
        service.submit_one(TaskRequest("echo", {}), "req-1")
    assert metrics.totals() == {}
