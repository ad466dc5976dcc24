"""The API's logic: accept tasks (store, then enqueue), report a task, report the system.
Accepted tasks are counted in the app's metrics (TasksAccepted)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import DependencyUnavailable, IdempotencyConflict, TaskNotFound
from chalicelib.model import TASK_STATUSES, NewTask, Task, TaskMessage, TaskRequest
from chalicelib.ports import TASKS_ACCEPTED, Metrics, TaskQueue, TaskStore

logger = logging.getLogger(__name__)

PROCESSED_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Submission:
    """The outcome of one submitted task.

    outcome: "accepted" (stored and enqueued now), "duplicate" (its idempotency key was seen:
    the earlier task, nothing enqueued), "conflict" (the key was used for a different task),
    "rejected" (SQS did not take it: nothing kept, safe to retry)."""

    outcome: str
    task: Task

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "duplicate")


def utc_now() -> datetime:
    return datetime.now(UTC)


class TaskService:
    def __init__(
        self,
        queue: TaskQueue,
        store: TaskStore,
        metrics: Metrics,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self._queue = queue
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._new_id = new_id

    def submit(self, requests: Sequence[TaskRequest], correlation_id: str) -> list[Submission]:
        """Store the tasks as queued, then enqueue them; the row exists before any worker can
        see the message. A task SQS refuses is withdrawn again, so nothing rejected lingers.
        Raises DependencyUnavailable (nothing changed) when the store does not answer."""
        accepted_at = self._clock()
        new = [
            NewTask(
                id=self._new_id(),
                type=r.type,
                payload=r.payload,
                idempotency_key=r.idempotency_key,
                correlation_id=correlation_id,
                accepted_at=accepted_at,
            )
            for r in requests
        ]
        admissions = self._store.admit(new)
        to_send = [TaskMessage.of(t) for t, a in zip(new, admissions, strict=True) if a.created]
        refused = set(self._queue.send(to_send)) if to_send else set()
        if refused:
            self._store.withdraw(sorted(refused))
        results = []
        for task, admission in zip(new, admissions, strict=True):
            if admission.created:
                outcome = "rejected" if task.id in refused else "accepted"
            elif task.same_request_as(admission.task):
                outcome = "duplicate"
            else:
                outcome = "conflict"
            results.append(Submission(outcome, admission.task))
            if outcome == "accepted":  # not a duplicate (enqueued before), not a rejected one
                self._metrics.add(TASKS_ACCEPTED, 1, "Count", at=accepted_at)
        # The end of this request's work; the metrics adapter decides whether to publish now.
        self._metrics.flush()
        return results

    def submit_one(self, request: TaskRequest, correlation_id: str) -> Submission:
        [result] = self.submit([request], correlation_id)
        if result.outcome == "conflict":
            raise IdempotencyConflict(
                f"idempotency_key {request.idempotency_key!r} was used for task "
                f"{result.task.id} with a different type or payload"
            )
        if result.outcome == "rejected":
            raise DependencyUnavailable("SQS did not accept the task; nothing was kept, retry")
        return result

    def get(self, task_id: uuid.UUID) -> Task:
        task = self._store.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return task

    def status(self) -> dict[str, Any]:
        counts = self._store.count_by_status()
        return {
            "queue": self._queue.depth().to_json(),
            "dead_letter_queue": self._queue.dead_letter_depth().to_json(),
            "tasks": {status: counts.get(status, 0) for status in TASK_STATUSES},
            "processed_last_minute": self._store.finished_since(PROCESSED_WINDOW_SECONDS),
        }

    def health(self) -> dict[str, str]:
        """Each dependency's state: "ok" or what went wrong."""
        checks: dict[str, str] = {}
        for name, check in (("queue", self._queue.depth), ("database", self._store.check)):
            try:
                check()
                checks[name] = "ok"
            except DependencyUnavailable as e:
                checks[name] = str(e)
        return checks
