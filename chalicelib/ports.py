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

from chalicelib.model import Admission, NewTask, QueueDepth, Task, TaskMessage


class TaskQueue(ABC):
    @abstractmethod
    def send(self, messages: Sequence[TaskMessage]) -> list[uuid.UUID]:
        """Enqueue the messages; return the task ids that could NOT be enqueued."""

    @abstractmethod
    def depth(self) -> QueueDepth:
        """The task queue's approximate depth. Raises DependencyUnavailable."""

    @abstractmethod
    def dead_letter_depth(self) -> QueueDepth:
        """The dead-letter queue's approximate depth. Raises DependencyUnavailable."""


class TaskStore(ABC):
    # --- the API's side
    @abstractmethod
    def admit(self, tasks: Sequence[NewTask]) -> list[Admission]:
        """Store new tasks as `queued`, in order. A task whose idempotency key is already stored
        is not stored again: its Admission carries the earlier task with created=False."""

    @abstractmethod
    def withdraw(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Remove tasks that were admitted but could not be enqueued (still `queued`)."""

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
    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> bool:
        """Mark the task running and count the attempt. False when it is already done or failed
        (a redelivery: nothing to do). Creates the row if the API's insert is missing."""

    @abstractmethod
    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> datetime | None:
        """Mark a running task done with its result; return its finished_at as stored. None when
        the task was not running (another delivery finished it first): nothing changed."""

    @abstractmethod
    def record_failure(self, task_id: uuid.UUID, error: str, final: bool) -> bool:
        """Record a failed attempt: `retrying`, or `failed` when no receive is left. False when
        the task was not running (another delivery finished it first): nothing changed."""


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
