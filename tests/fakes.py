"""In-memory adapters of the app's ports, with the same contract as the real ones
(tests/contract.py runs one suite against both kinds of store)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import DependencyUnavailable
from chalicelib.model import (
    FINAL_STATUSES,
    UNFINISHED_STATUSES,
    Admission,
    Attempt,
    NewTask,
    QueueDepth,
    RedeliverySettings,
    Task,
    TaskMessage,
)
from chalicelib.ports import (
    Deadline,
    Metrics,
    MetricUnit,
    ReceivedMessages,
    TaskQueue,
    TaskStore,
)


class InMemoryTaskQueue(TaskQueue):
    def __init__(self, visibility_timeout_s: int = 30, max_receives: int = 5) -> None:
        self.sent: list[TaskMessage] = []
        self.refuse: set[uuid.UUID] = set()  # ids SQS will not take
        self.down = False  # every call fails, as when SQS does not answer
        self.dead_letters = 0
        self.in_flight = 0
        created = datetime(2026, 1, 1, tzinfo=UTC)
        self.settings = RedeliverySettings(visibility_timeout_s, max_receives, created)
        # Called before each message is sent: a test's hook into the middle of a send.
        self.before_each: Callable[[TaskMessage], None] | None = None

    def send(
        self, messages: Sequence[TaskMessage], deadline: Deadline | None = None
    ) -> list[uuid.UUID]:
        if self.down:
            return [m.task_id for m in messages]
        not_sent = []
        for message in messages:
            if self.before_each is not None:
                self.before_each(message)
            if deadline is not None and deadline.remaining_ms() <= 0:
                not_sent.append(message.task_id)
                continue
            if message.task_id in self.refuse:
                not_sent.append(message.task_id)
            else:
                self.sent.append(message)
        return not_sent

    def redelivery_settings(self) -> RedeliverySettings:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")
        return self.settings

    def depth(self) -> QueueDepth:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")
        return QueueDepth(visible=len(self.sent), in_flight=self.in_flight, delayed=0)

    def dead_letter_depth(self) -> QueueDepth:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")
        return QueueDepth(visible=self.dead_letters, in_flight=0, delayed=0)


class RecordedMessages(ReceivedMessages):
    """Keeps what the worker asked SQS to do with its batch's messages."""

    def __init__(self) -> None:
        self.delays: dict[str, int] = {}  # receipt handle -> seconds
        self.dead_letters: list[tuple[str, str]] = []  # (body, reason)
        self.requeued: list[tuple[str, int]] = []  # (body, delay)
        self.down = False

    def _available(self) -> None:
        if self.down:
            raise DependencyUnavailable("SQS: down (fake)")

    def retry_later(self, delays: Sequence[tuple[str, int]]) -> None:
        self._available()
        self.delays.update(delays)

    def dead_letter(self, body: str, attributes: dict[str, Any], reason: str) -> None:
        self._available()
        self.dead_letters.append((body, reason))

    def requeue(self, body: str, attributes: dict[str, Any], delay_s: int) -> None:
        self._available()
        self.requeued.append((body, delay_s))


class FixedDeadline(Deadline):
    def __init__(self, remaining_ms: int) -> None:
        self.ms = remaining_ms

    def remaining_ms(self) -> int:
        return self.ms


class InMemoryTaskStore(TaskStore):
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Task] = {}
        self.requeued_at: dict[uuid.UUID, datetime] = {}
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
            row = task.pending()
            self.rows[task.id] = row
            if task.idempotency_key:
                by_key[task.idempotency_key] = row
            admissions.append(Admission(row, created=True))
        return admissions

    def commit(self, task_ids: Sequence[uuid.UUID]) -> int:
        self._available()
        committed = 0
        for task_id in task_ids:
            row = self.rows.get(task_id)
            if row is not None and row.status == "pending":
                self.rows[task_id] = row.committed()
                committed += 1
        return committed

    def withdraw(self, task_ids: Sequence[uuid.UUID]) -> None:
        self._available()
        for task_id in task_ids:
            if task_id in self.rows and self.rows[task_id].status == "pending":
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

    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> Attempt:
        self._available()
        row = self.rows.get(message.task_id)
        if row is None:
            return Attempt.NOT_ACCEPTED
        if row.status == "pending":
            return Attempt.UNCOMMITTED
        if row.status in FINAL_STATUSES:
            return Attempt.FINISHED
        self.rows[message.task_id] = replace(
            row,
            status="running",
            attempts=row.attempts + 1,
            started_at=datetime.now(UTC),
            worker_request_id=worker_request_id,
        )
        return Attempt.STARTED

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

    # --- the reconciler's side
    def _unfinished(self) -> list[Task]:
        return [r for r in self.rows.values() if r.status in UNFINISHED_STATUSES]

    def unfinished_count(self) -> int:
        self._available()
        return len(self._unfinished())

    def idle_tasks(self, touched_before: datetime, limit: int) -> list[Task]:
        self._available()

        def last_touched(row: Task) -> datetime:
            moments = [row.accepted_at, row.started_at, self.requeued_at.get(row.id)]
            return max(m for m in moments if m is not None)

        idle = [r for r in self._unfinished() if last_touched(r) < touched_before]
        return sorted(idle, key=lambda r: r.accepted_at)[:limit]

    def mark_requeued(self, task_ids: Sequence[uuid.UUID]) -> None:
        self._available()
        for task_id in task_ids:
            self.requeued_at[task_id] = datetime.now(UTC)

    def fail_unfinished(self, task_ids: Sequence[uuid.UUID], error: str) -> int:
        self._available()
        changed = 0
        for task_id in task_ids:
            row = self.rows.get(task_id)
            if row is not None and row.status in UNFINISHED_STATUSES:
                self.rows[task_id] = replace(
                    row, status="failed", error=error, finished_at=datetime.now(UTC)
                )
                changed += 1
        return changed

    def withdraw_abandoned(self, older_than_seconds: float) -> int:
        self._available()
        since = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        abandoned = [
            r.id for r in self.rows.values() if r.status == "pending" and r.accepted_at < since
        ]
        for task_id in abandoned:
            del self.rows[task_id]
        return len(abandoned)


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
