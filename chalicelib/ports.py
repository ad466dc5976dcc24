"""The app's two ports: the task queue (SQS) and the task store (PostgreSQL). Adapters live
beside them (sqs_queue.py, postgres_store.py); tests have in-memory ones (tests/fakes.py), and
one contract suite runs against both kinds."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

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
    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> None:
        """Mark a running task done with its result."""

    @abstractmethod
    def record_failure(self, task_id: uuid.UUID, error: str, final: bool) -> None:
        """Record a failed attempt: `retrying`, or `failed` when no receive is left."""
