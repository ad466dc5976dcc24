"""PostgreSQL is the source of truth for accepted tasks; the queue is how they reach a worker.
The reconciler finds tasks the queue no longer carries and puts them back. It runs as a
scheduled function (every minute, on AWS as here) and once after every deploy, so after the
local cloud comes back without its queues, recovery starts at once.

What it does, each run:
1. Withdraws `pending` tasks whose API request died before it answered (no client got a 202).
2. Compares the queue's messages (visible, in flight, delayed) with the committed, unfinished
   rows. As many messages as rows: nothing to do (a deep backlog is waiting, not lost).
3. Otherwise some messages are gone (a queue lost with LocalStack, a crash, a message a timed-out
   function took to the dead-letter queue). Tasks nothing has touched since the queue was
   created (a queue made anew holds none of their messages), or for longer than the queue would
   take to deliver them again (its visibility timeout, or the retry backoff's cap), are resent;
   those that already used every receive are failed with the reason instead: their message
   timed out on each receive and went to the dead-letter queue.

A resent task that was not lost after all is harmless: the worker's conditional writes run a
task to its end once, whatever the number of its messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from chalicelib.model import Task, TaskMessage
from chalicelib.ports import TaskQueue, TaskStore
from chalicelib.settings import Backoff

logger = logging.getLogger(__name__)

# An abandoned request's pending tasks are withdrawn after this (a retry takes them over
# sooner: service.ABANDONED_AFTER_SECONDS).
ABANDONED_PENDING_SECONDS = 120
# Beyond the time the queue takes to deliver a message again, before a task counts as idle.
IDLE_MARGIN_SECONDS = 30
# Tasks looked at per run: a run stays well inside its function's timeout.
MAX_TASKS_PER_RUN = 5000


@dataclass(frozen=True)
class Reconciliation:
    withdrawn: int  # abandoned pending tasks removed
    unfinished: int  # committed tasks not done or failed
    in_queue: int  # messages in the task queue
    resent: int
    failed: int  # out of receives: failed with the reason

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class Reconciler:
    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        backoff: Backoff,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._queue = queue
        self._backoff = backoff
        self._clock = clock

    def run(self) -> Reconciliation:
        withdrawn = self._store.withdraw_abandoned(ABANDONED_PENDING_SECONDS)
        depth = self._queue.depth()
        in_queue = depth.visible + depth.in_flight + depth.delayed
        unfinished = self._store.unfinished_count()
        resent = failed = 0
        if in_queue < unfinished:
            redelivery = self._queue.redelivery_settings()
            # A task untouched since the queue was created is certainly not in it (the queue
            # was made anew); otherwise idle for longer than a message takes to come back.
            idle_s = max(redelivery.visibility_timeout_s, self._backoff.max_s) + IDLE_MARGIN_SECONDS
            touched_before = max(redelivery.created_at, self._clock() - timedelta(seconds=idle_s))
            idle = self._store.idle_tasks(touched_before, MAX_TASKS_PER_RUN)
            limit = redelivery.max_receives
            out_of_receives = [t for t in idle if limit is not None and t.attempts >= limit]
            to_resend = [t for t in idle if limit is None or t.attempts < limit]
            failed = self._fail(out_of_receives)
            resent = self._resend(to_resend)
        result = Reconciliation(withdrawn, unfinished, in_queue, resent, failed)
        if withdrawn or resent or failed:
            logger.warning("reconciled: %s", result.to_json())
        else:
            logger.info("nothing to reconcile: %s", result.to_json())
        return result

    def _fail(self, tasks: list[Task]) -> int:
        if not tasks:
            return 0
        return self._store.fail_unfinished(
            [t.id for t in tasks],
            "no attempt finished: the function timed out or its environment ended on every "
            "receive, and the message went to the dead-letter queue",
        )

    def _resend(self, tasks: list[Task]) -> int:
        if not tasks:
            return 0
        not_sent = set(self._queue.send([TaskMessage.of(t) for t in tasks]))
        sent = [t.id for t in tasks if t.id not in not_sent]
        self._store.mark_requeued(sent)
        return len(sent)
