"""The API's logic: accept tasks (store, then enqueue), report a task, report the system.
Accepted tasks are counted in the app's metrics (TasksAccepted)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from chalicelib.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    RequestNotFinished,
    TaskNotFound,
)
from chalicelib.model import TASK_STATUSES, Admission, NewTask, Task, TaskMessage, TaskRequest
from chalicelib.ports import TASKS_ACCEPTED, Deadline, Metrics, TaskQueue, TaskStore

logger = logging.getLogger(__name__)

PROCESSED_WINDOW_SECONDS = 60
# A request starts storing tasks only with this much of its time left: enough to store, send
# and commit 100 tasks, or to withdraw them, before Lambda would cut it off (a 502 that says
# nothing of what was kept).
START_BUDGET_MS = 3000
# A pending task this much older than a retry of it belongs to a request that died without an
# answer: API Gateway gives up on an integration after 29 s at most. The retry takes it over.
ABANDONED_AFTER_SECONDS = 30


@dataclass(frozen=True)
class Submission:
    """The outcome of one submitted task.

    outcome: "accepted" (stored and enqueued now), "duplicate" (its idempotency key was seen:
    the earlier task, nothing enqueued), "conflict" (the key was used for a different task).
    A request that cannot be finished raises RequestNotFinished instead: nothing was kept."""

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

    def submit(
        self,
        requests: Sequence[TaskRequest],
        correlation_id: str,
        deadline: Deadline | None = None,
    ) -> list[Submission]:
        """Accept a request's tasks whole or not at all. Store them `pending`, enqueue them,
        then commit them (`queued`): the row exists before any worker can see its message, and
        a worker runs a task only once it is committed. When the tasks cannot all be enqueued
        (SQS refuses one, `deadline` draws near), the request's pending tasks are withdrawn and
        RequestNotFinished says so: the client's retry with the same idempotency keys starts
        afresh. Raises DependencyUnavailable (nothing changed) when the store does not answer."""
        if deadline is not None and deadline.remaining_ms() < START_BUDGET_MS:
            raise RequestNotFinished(
                f"only {deadline.remaining_ms()} ms of this request's time was left; "
                "nothing was kept"
            )
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
        outcomes = [self._outcome(t, a) for t, a in zip(new, admissions, strict=True)]
        ours = [a.task for a, o in zip(admissions, outcomes, strict=True) if o == "accepted"]
        if "in progress" in outcomes:
            self._withdraw(ours, "an earlier request with the same idempotency keys still runs")
        if ours:
            not_sent = self._queue.send([TaskMessage.of(t) for t in ours], deadline)
            if not_sent:
                self._withdraw(ours, f"{len(not_sent)} of its tasks could not be enqueued")
            committed = self._store.commit([t.id for t in ours])
            if committed != len(ours):
                self._withdraw(ours, "another request with the same keys withdrew some")
        results = []
        for admission, outcome in zip(admissions, outcomes, strict=True):
            stored = admission.task.committed() if outcome == "accepted" else admission.task
            results.append(Submission(outcome, stored))
            if outcome == "accepted":  # not a duplicate (enqueued before)
                self._metrics.add(TASKS_ACCEPTED, 1, "Count", at=accepted_at)
        # The end of this request's work; the metrics adapter decides whether to publish now.
        self._metrics.flush()
        return results

    def _outcome(self, task: NewTask, admission: Admission) -> str:
        """accepted: this request enqueues it (a new task, or one an earlier request abandoned
        pending); duplicate: stored and committed before; conflict: the key names another task;
        in progress: another request with this key has not finished yet."""
        earlier = admission.task
        if admission.created:
            return "accepted"
        if not task.same_request_as(earlier):
            return "conflict"
        if earlier.status != "pending":
            return "duplicate"
        age = (task.accepted_at - earlier.accepted_at).total_seconds()
        return "accepted" if age > ABANDONED_AFTER_SECONDS else "in progress"

    def _withdraw(self, tasks: Sequence[Task], why: str) -> NoReturn:
        """Withdraw the request's pending tasks and end it with a 503 that says why."""
        self._store.withdraw([t.id for t in tasks])
        self._metrics.flush()
        raise RequestNotFinished(f"{why}; nothing of this request was kept")

    def submit_one(
        self, request: TaskRequest, correlation_id: str, deadline: Deadline | None = None
    ) -> Submission:
        [result] = self.submit([request], correlation_id, deadline)
        if result.outcome == "conflict":
            raise IdempotencyConflict(
                f"idempotency_key {request.idempotency_key!r} was used for task "
                f"{result.task.id} with a different type or payload"
            )
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
