"""The app's ports: the task queue (SQS), the task store (PostgreSQL) and the metrics sink
(CloudWatch). Adapters live beside them (sqs_queue.py, postgres_store.py,
cloudwatch_metrics.py); tests have in-memory ones (tests/fakes.py), and one contract suite runs
against both kinds of store."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from chalicelib.model import (
    Admission,
    Attempt,
    NewTask,
    QueueDepth,
    RedeliverySettings,
    Task,
    TaskMessage,
)


class Deadline(ABC):
    """How much of an invocation's time is left (Lambda's context, in production)."""

    @abstractmethod
    def remaining_ms(self) -> int: ...


class TaskQueue(ABC):
    @abstractmethod
    def send(
        self, messages: Sequence[TaskMessage], deadline: Deadline | None = None
    ) -> list[uuid.UUID]:
        """Enqueue the messages; return the task ids that could NOT be enqueued. With a
        deadline, stops sending when too little time is left (what was not sent is returned)."""

    @abstractmethod
    def depth(self) -> QueueDepth:
        """The task queue's approximate depth. Raises DependencyUnavailable."""

    @abstractmethod
    def dead_letter_depth(self) -> QueueDepth:
        """The dead-letter queue's approximate depth. Raises DependencyUnavailable."""

    @abstractmethod
    def redelivery_settings(self) -> RedeliverySettings:
        """The task queue's visibility timeout and maxReceiveCount, as SQS has them."""


class ReceivedMessages(ABC):
    """What the worker does with the messages of its batch besides answering the batch: SQS
    calls on the task queue and its dead-letter queue. Each raises DependencyUnavailable."""

    @abstractmethod
    def retry_later(self, delays: Sequence[tuple[str, int]]) -> None:
        """(receipt handle, seconds): each message comes back after its delay, not after the
        queue's visibility timeout (ChangeMessageVisibility)."""

    @abstractmethod
    def dead_letter(self, body: str, attributes: dict[str, Any], reason: str) -> None:
        """Put a copy of the message in the dead-letter queue, with why it failed for good."""

    @abstractmethod
    def requeue(self, body: str, attributes: dict[str, Any], delay_s: int) -> None:
        """Send a copy of the message to the task queue as a new message (its receive count
        starts again), visible after `delay_s`."""


class TaskStore(ABC):
    def close(self) -> None:  # noqa: B027  # a store without connections has nothing to close
        """Close what the store holds open (its database connection); it reopens on next use."""

    # --- the API's side
    @abstractmethod
    def admit(self, tasks: Sequence[NewTask]) -> list[Admission]:
        """Store new tasks as `pending`, in order. A task whose idempotency key is already stored
        is not stored again: its Admission carries the earlier task with created=False."""

    @abstractmethod
    def commit(self, task_ids: Sequence[uuid.UUID]) -> int:
        """`pending` -> `queued` for the tasks, once all their messages are sent; returns how
        many rows changed (fewer than asked: another request withdrew some meanwhile)."""

    @abstractmethod
    def withdraw(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Remove the tasks that are still `pending`: their request could not be finished."""

    @abstractmethod
    def get(self, task_id: uuid.UUID) -> Task | None: ...

    @abstractmethod
    def count_by_status(self) -> dict[str, int]: ...

    @abstractmethod
    def finished_since(self, seconds: float) -> int:
        """How many tasks reached done or failed in the last `seconds`."""

    @abstractmethod
    def check(self) -> None:
        """Raise DependencyUnavailable unless the store answers."""

    # --- the worker's side; every write is conditional, so a redelivered message is harmless
    @abstractmethod
    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> Attempt:
        """Mark the task running and count the attempt (STARTED) if it is queued, running or
        retrying; otherwise say why not (Attempt)."""

    @abstractmethod
    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> datetime | None:
        """Mark a running task done with its result; return its finished_at as stored. None when
        the task was not running (another delivery finished it first): nothing changed."""

    @abstractmethod
    def record_failure(self, task_id: uuid.UUID, error: str, final: bool) -> bool:
        """Record a failed attempt: `retrying`, or `failed` when no receive is left. False when
        the task was not running (another delivery finished it first): nothing changed."""

    # --- the reconciler's side
    @abstractmethod
    def unfinished_count(self) -> int:
        """How many committed tasks are not done or failed (queued, running, retrying)."""

    @abstractmethod
    def idle_tasks(self, touched_before: datetime, limit: int) -> list[Task]:
        """Committed, unfinished tasks that nothing has touched (accepted, started or requeued)
        since `touched_before`, oldest first."""

    @abstractmethod
    def mark_requeued(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Note that the tasks' messages were sent again now."""

    @abstractmethod
    def fail_unfinished(self, task_ids: Sequence[uuid.UUID], error: str) -> int:
        """Mark unfinished tasks failed with `error`; returns how many changed."""

    @abstractmethod
    def withdraw_abandoned(self, older_than_seconds: float) -> int:
        """Remove `pending` tasks older than this: their request died before it answered."""


# --- the metrics sink -----------------------------------------------------------------------
MetricUnit = Literal["Count", "Milliseconds"]

# The app's business metrics (namespace POWERTOOLS_METRICS_NAMESPACE, dimension `service`).
TASKS_ACCEPTED = "TasksAccepted"  # Count: one per task the API accepted (not duplicates)
TASKS_PROCESSED = "TasksProcessed"  # Count: one per task a worker finished `done`
TASKS_FAILED = "TasksFailed"  # Count: one per task marked `failed` (its last receive failed)
TASKS_RETRIED = "TasksRetried"  # Count: one per record handed back for another receive
BATCH_SIZE = "BatchSize"  # Count: one value per worker invocation, its number of records
END_TO_END_LATENCY = "EndToEndLatency"  # Milliseconds: accepted_at -> finished_at, per done task
COLD_STARTS = "ColdStarts"  # Count: one per execution environment, at its first invocation
INIT_DURATION = "InitDuration"  # Milliseconds: the app's load -> its first invocation, per start


class Metrics(ABC):
    """Where the app records its own metrics. Recording is cheap and local; publishing is the
    adapter's business and is batched. Neither ever raises: a metric is never worth a failed
    request or batch."""

    @abstractmethod
    def add(self, name: str, value: float, unit: MetricUnit, at: datetime | None = None) -> None:
        """Record one sample, stamped `at` (when the event happened; default: now)."""

    @abstractmethod
    def flush(self) -> None:
        """The end of a unit of work (a request, a batch): publish what is recorded, at most
        one publish per call. An adapter may hold the data back to publish less often."""
