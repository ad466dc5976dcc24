"""In-memory adapters of the app's ports, with the same contract as the real ones
(tests/contract.py runs one suite against both kinds of store)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import DependencyUnavailable
from chalicelib.model import FINAL_STATUSES, Admission, NewTask, QueueDepth, Task, TaskMessage
from chalicelib.ports import Metrics, MetricUnit, TaskQueue, TaskStore


class InMemoryTaskQueue(TaskQueue):
    def __init__(self) -> None:
        self.sent: list[TaskMessage] = []
        self.refuse: set[uuid.UUID] = set()  # ids SQS will not take
        self.down = False  # every call fails, as when SQS does not answer
        self.dead_letters = 0

    def send(self, messages: Sequence[TaskMessage]) -> list[uuid.UUID]:
        if self.down:
            return [m.task_id for m in messages]
        self.sent.extend(m for m in messages if m.task_id not in self.refuse)
        return [m.task_id for m in messages if m.task_id in self.refuse]

    def depth(self) -> QueueDepth:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")
        return QueueDepth(visible=len(self.sent), in_flight=0, delayed=0)

    def dead_letter_depth(self) -> QueueDepth:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")
        return QueueDepth(visible=self.dead_letters, in_flight=0, delayed=0)


class InMemoryTaskStore(TaskStore):
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Task] = {}
        self.down = False

    def _available(self) -> None:
        if self.down:
            raise DependencyUnavailable("PostgreSQL: down (fake)")

    def admit(self, tasks: Sequence[NewTask]) -> list[Admission]:
        self._available()
        by_key = {t.idempotency_key: t for t in self.rows.values() if t.idempotency_key}
        admissions = []
        for task in tasks:
            earlier = by_key.get(task.idempotency_key) if task.idempotency_key else None
            if earlier is not None:
                admissions.append(Admission(earlier, created=False))
                continue
            row = task.queued()
            self.rows[task.id] = row
            if task.idempotency_key:
                by_key[task.idempotency_key] = row
            admissions.append(Admission(row, created=True))
        return admissions

    def withdraw(self, task_ids: Sequence[uuid.UUID]) -> None:
        self._available()
        for task_id in task_ids:
            if task_id in self.rows and self.rows[task_id].status == "queued":
                del self.rows[task_id]

    def get(self, task_id: uuid.UUID) -> Task | None:
        self._available()
        return self.rows.get(task_id)

    def count_by_status(self) -> dict[str, int]:
        self._available()
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def finished_since(self, seconds: float) -> int:
        self._available()
        since = datetime.now(UTC) - timedelta(seconds=seconds)
        return sum(1 for r in self.rows.values() if r.finished_at and r.finished_at > since)

    def check(self) -> None:
        self._available()

    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> bool:
        self._available()
        row = self.rows.get(message.task_id)
        if row is None:
            row = NewTask(
                message.task_id,
                message.type,
                message.payload,
                message.idempotency_key,
                message.correlation_id,
                message.accepted_at,
            ).queued()
        elif row.status in FINAL_STATUSES:
            return False
        self.rows[message.task_id] = replace(
            row,
            status="running",
            attempts=row.attempts + 1,
            started_at=datetime.now(UTC),
            worker_request_id=worker_request_id,
        )
        return True

    def _update_running(self, task_id: uuid.UUID, **changes: Any) -> Task | None:
        self._available()
        row = self.rows.get(task_id)
        if row is None or row.status != "running":
            return None
        self.rows[task_id] = replace(row, **changes)
        return self.rows[task_id]

    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> datetime | None:
        done = self._update_running(
            task_id, status="done", finished_at=datetime.now(UTC), result=result, error=None
        )
        return None if done is None else done.finished_at

    def record_failure(self, task_id: uuid.UUID, error: str, final: bool) -> bool:
        updated = self._update_running(
            task_id,
            status="failed" if final else "retrying",
            error=error,
            finished_at=datetime.now(UTC) if final else None,
        )
        return updated is not None


@dataclass(frozen=True)
class Sample:
    name: str
    value: float
    unit: MetricUnit
    at: datetime | None


class InMemoryMetrics(Metrics):
    """Keeps every sample, and how many times the app asked to publish."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.flushes = 0

    def add(self, name: str, value: float, unit: MetricUnit, at: datetime | None = None) -> None:
        self.samples.append(Sample(name, value, unit, at))

    def flush(self) -> None:
        self.flushes += 1

    def values(self, name: str) -> list[float]:
        return [s.value for s in self.samples if s.name == name]

    def total(self, name: str) -> float:
        return sum(self.values(name))

    def totals(self) -> dict[str, float]:
        """Sum per metric name, for asserting on everything recorded at once."""
        sums: dict[str, float] = {}
        for sample in self.samples:
            sums[sample.name] = sums.get(sample.name, 0) + sample.value
        return sums
