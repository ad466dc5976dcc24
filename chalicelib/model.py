"""What the API, the queue, the store and the worker pass to each other."""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from chalicelib.errors import MalformedMessage

# The statuses a task row moves through (the tasks table checks the same list):
# pending -> queued -> running -> done, or running -> retrying -> running ... -> failed on the
# last receive. `pending`: the API stored the task and is still enqueueing its request's tasks;
# only when all of them are enqueued does it commit them (queued) and answer 202, so a request
# that cannot finish is withdrawn whole (its pending rows deleted, and a worker drops a message
# whose row is gone).
TASK_STATUSES = ("pending", "queued", "running", "retrying", "done", "failed")
FINAL_STATUSES = ("done", "failed")
UNFINISHED_STATUSES = ("queued", "running", "retrying")  # committed, not final


class Attempt(enum.Enum):
    """What a worker's start of a task found (TaskStore.start_attempt)."""

    STARTED = "started"  # the task is the worker's to run now
    FINISHED = "finished"  # done or failed already: a redelivery, nothing to do
    UNCOMMITTED = "uncommitted"  # pending: its API request is still running; try again soon
    NOT_ACCEPTED = "not accepted"  # no row: the API withdrew it (its client got no 202)


@dataclass(frozen=True)
class TaskRequest:
    """One validated task as a client asked for it."""

    type: str
    payload: dict[str, Any]
    idempotency_key: str | None = None


@dataclass(frozen=True)
class NewTask:
    """A task the API is about to accept."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    idempotency_key: str | None
    correlation_id: str
    accepted_at: datetime

    def same_request_as(self, other: Task) -> bool:
        return self.type == other.type and self.payload == other.payload

    def pending(self) -> Task:
        """The row this task starts as, until its request commits it."""
        return Task(
            id=self.id,
            type=self.type,
            payload=self.payload,
            status="pending",
            attempts=0,
            idempotency_key=self.idempotency_key,
            correlation_id=self.correlation_id,
            accepted_at=self.accepted_at,
        )


@dataclass(frozen=True)
class TaskMessage:
    """The SQS message of a task: the body is JSON, the correlation id a message attribute."""

    task_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    accepted_at: datetime
    idempotency_key: str | None
    correlation_id: str

    @classmethod
    def of(cls, task: NewTask | Task) -> TaskMessage:
        return cls(
            task.id,
            task.type,
            task.payload,
            task.accepted_at,
            task.idempotency_key,
            task.correlation_id or "",
        )

    def body(self) -> str:
        return json.dumps(
            {
                "task_id": str(self.task_id),
                "type": self.type,
                "payload": self.payload,
                "accepted_at": self.accepted_at.isoformat(),
                "idempotency_key": self.idempotency_key,
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, body: str, correlation_id: str | None) -> TaskMessage:
        try:
            data = json.loads(body)
            return cls(
                task_id=uuid.UUID(data["task_id"]),
                type=str(data["type"]),
                payload=dict(data["payload"]),
                accepted_at=datetime.fromisoformat(data["accepted_at"]),
                idempotency_key=data.get("idempotency_key"),
                correlation_id=correlation_id or "",
            )
        except (ValueError, KeyError, TypeError) as e:
            raise MalformedMessage(f"not a task message ({type(e).__name__}: {e})") from e


@dataclass(frozen=True)
class Task:
    """A row of the tasks table."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    status: str
    attempts: int
    idempotency_key: str | None
    correlation_id: str | None
    accepted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_request_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def committed(self) -> Task:
        return replace(self, status="queued")

    def to_json(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        def ms(start: datetime | None, end: datetime | None) -> float | None:
            if start is None or end is None:
                return None
            return round((end - start).total_seconds() * 1000, 1)

        return {
            "id": str(self.id),
            "type": self.type,
            "payload": self.payload,
            "status": self.status,
            "attempts": self.attempts,
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id,
            "accepted_at": iso(self.accepted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "worker_request_id": self.worker_request_id,
            "result": self.result,
            "error": self.error,
            "timings_ms": {
                # the last attempt's wait and run; end_to_end spans all attempts
                "queued": ms(self.accepted_at, self.started_at),
                "run": ms(self.started_at, self.finished_at),
                "end_to_end": ms(self.accepted_at, self.finished_at),
            },
        }


@dataclass(frozen=True)
class Admission:
    """What storing a new task found: the task as stored, and whether this request created it
    (False: its idempotency key was seen before and `task` is the earlier one)."""

    task: Task
    created: bool


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    def to_json(self) -> dict[str, int]:
        return {"visible": self.visible, "in_flight": self.in_flight, "delayed": self.delayed}


@dataclass(frozen=True)
class RedeliverySettings:
    """When SQS delivers a message again: after the visibility timeout, at most maxReceiveCount
    times before it moves the message to the dead-letter queue."""

    visibility_timeout_s: int
    max_receives: int | None  # None: the queue has no redrive policy
    created_at: datetime  # a message older than the queue cannot be in it
