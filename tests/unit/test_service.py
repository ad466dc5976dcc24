"""Accepting tasks: stored before enqueued, idempotent, and nothing kept that SQS refused."""

from __future__ import annotations

import uuid

import pytest

from chalicelib.errors import DependencyUnavailable, IdempotencyConflict, TaskNotFound
from chalicelib.model import TaskRequest
from chalicelib.service import TaskService
from tests.fakes import InMemoryTaskQueue, InMemoryTaskStore


@pytest.fixture
def service(queue: InMemoryTaskQueue, store: InMemoryTaskStore) -> TaskService:
    return TaskService(queue, store)


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
    queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    ids = iter(uuid.UUID(int=i) for i in range(1, 4))
    service = TaskService(queue, store, new_id=lambda: next(ids))
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
