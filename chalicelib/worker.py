"""The SQS worker: one function per record, and a partial batch response, so only the records
that failed go back to the queue (the deploy turns on ReportBatchItemFailures).

Delivery is at least once; the effect is exactly once: every write is conditional on the row's
status (ports.TaskStore), so a redelivered message finds its task done and does nothing. The
metrics follow the writes: a task is counted done or failed only by the write that made it so.

Failures, by kind:
- a task that failed (`fail`, an unlucky `flaky`): back to the queue after a backoff that grows
  with its receive count (ChangeMessageVisibility; Backoff), `failed` on its last receive, and
  then SQS moves it to the dead-letter queue;
- a message no retry can fix (not a task message, an unknown type, a payload its type refuses):
  `failed` at once with its reason, and the message put in the dead-letter queue by the worker;
- a dependency down (PostgreSQL): the rest of the batch is not tried (fail fast), one log line
  says so, and the records come back after the backoff; on its last receive a record is sent
  again as a new message instead, so an outage never dead-letters a task that would succeed.

Metrics per invocation: BatchSize once; per record TasksProcessed and EndToEndLatency (done),
TasksFailed (marked failed for good) or TasksRetried (handed back to the queue for another
receive); handed to the metrics port at the end of the batch, which publishes at most once a
second (wiring.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chalicelib.errors import (
    DependencyUnavailable,
    MalformedMessage,
    PermanentTaskFailure,
    TaskDeferred,
    TaskFailed,
    TaskNotCommitted,
)
from chalicelib.model import Attempt, TaskMessage
from chalicelib.ports import (
    BATCH_SIZE,
    END_TO_END_LATENCY,
    TASKS_FAILED,
    TASKS_PROCESSED,
    TASKS_RETRIED,
    Metrics,
    ReceivedMessages,
    TaskStore,
)
from chalicelib.settings import Backoff
from chalicelib.sqs_queue import CORRELATION_ATTRIBUTE
from chalicelib.task_types import TaskRunner

logger = logging.getLogger(__name__)

# Time a record needs beyond its task's own: two writes to the database, logging.
MARGIN_MS = 1000
# The API commits a task right after SQS took its message, and an idle trigger long-polls, so
# the message can arrive first (on AWS as here). Look again after these pauses (155 ms in all)
# before handing the record back for a backoff of seconds.
UNCOMMITTED_RECHECK_SECONDS = (0.005, 0.01, 0.02, 0.04, 0.08)


@dataclass
class _Batch:
    """What one invocation learnt while it went through its records."""

    retry_delays: list[tuple[str, int]] = field(default_factory=list)  # (receipt, seconds)
    dependency_error: str | None = None  # the first; later records are not tried
    skipped: int = 0
    # The invocation's time when the batch began: about the function's timeout. A task that
    # needs more can never run here, however often it is deferred.
    started_with_ms: int = 0


class Worker:
    def __init__(
        self,
        store: TaskStore,
        runner: TaskRunner,
        max_receives: int,
        log: Logger,
        metrics: Metrics,
        messages: ReceivedMessages,
        backoff: Backoff,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._wait = wait
        self._runner = runner
        self._max_receives = max_receives
        self._log = log
        self._metrics = metrics
        self._messages = messages
        self._backoff = backoff
        self._batch = _Batch()
        # raise_on_entire_batch_failure=False: when every record fails, answer with all of
        # them as failures (the same outcome for SQS) instead of raising.
        self._processor = BatchProcessor(
            event_type=EventType.SQS, raise_on_entire_batch_failure=False
        )

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda handler's body: {"batchItemFailures": [{"itemIdentifier": id}, ...]}."""
        records = event.get("Records") or []
        self._metrics.add(BATCH_SIZE, len(records), "Count")
        self._batch = _Batch(started_with_ms=int(context.get_remaining_time_in_millis()))
        try:
            response = process_partial_response(
                event=event,
                record_handler=self.process_record,
                processor=self._processor,
                context=context,
            )
            self._schedule_retries(len(records))
        finally:
            # One publish per batch, before Lambda may freeze this environment (never raises).
            self._metrics.flush()
        return dict(response)

    def process_record(self, record: SQSRecord, lambda_context: LambdaContext) -> None:
        """Raise to send this record back to the queue; return to have it deleted."""
        attributes = record.raw_event.get("messageAttributes") or {}
        correlation_id = (attributes.get(CORRELATION_ATTRIBUTE) or {}).get("stringValue")
        receive_count = int(record.attributes.approximate_receive_count)
        keys = {"correlation_id": correlation_id, "message_id": record.message_id}
        self._log.append_keys(**keys)
        try:
            self._process(record, attributes, correlation_id, receive_count, lambda_context)
        finally:
            self._log.remove_keys([*keys, "task_id", "task_type"])

    def _process(
        self,
        record: SQSRecord,
        attributes: dict[str, Any],
        correlation_id: str | None,
        receive_count: int,
        lambda_context: LambdaContext,
    ) -> None:
        try:
            message = TaskMessage.parse(record.body, correlation_id)
        except MalformedMessage as e:
            logger.error("not a task message; into the dead-letter queue: %s", e)
            self._messages.dead_letter(record.body, attributes, str(e))
            return
        self._log.append_keys(task_id=str(message.task_id), task_type=message.type)
        try:
            if self._batch.dependency_error is not None:
                self._batch.skipped += 1
                raise DependencyUnavailable(self._batch.dependency_error)
            self._run(
                message,
                receive_count,
                lambda_context.aws_request_id,
                lambda_context.get_remaining_time_in_millis(),
            )
        except PermanentTaskFailure as e:
            self._messages.dead_letter(record.body, attributes, str(e))
        except (DependencyUnavailable, TaskNotCommitted, TaskDeferred) as e:
            # Nothing wrong with the task: it must come back, however often this happens.
            if isinstance(e, DependencyUnavailable) and self._batch.dependency_error is None:
                self._batch.dependency_error = str(e)
            delay = 0 if isinstance(e, TaskDeferred) else self._backoff.delay(receive_count)
            if receive_count < self._max_receives:
                self._hand_back(record, receive_count, delay)
                raise
            # Its last receive: a copy with a fresh receive count, so that waiting (for the
            # database, for the API's commit, for time) never dead-letters a task.
            self._messages.requeue(record.body, attributes, delay or 0)
            self._metrics.add(TASKS_RETRIED, 1, "Count")
        except Exception:
            self._hand_back(record, receive_count, self._backoff.delay(receive_count))
            raise

    def _hand_back(self, record: SQSRecord, receive_count: int, delay: int | None) -> None:
        """The record goes back to the queue after `delay` seconds (None: the visibility
        timeout). Counted as retried if SQS will deliver it again; on its last receive SQS
        moves it to the dead-letter queue instead, at once (delay 0)."""
        last = receive_count >= self._max_receives
        if not last:
            self._metrics.add(TASKS_RETRIED, 1, "Count")
        seconds = 0 if last and self._backoff.enabled else delay
        if seconds is not None:
            self._batch.retry_delays.append((record.receipt_handle, seconds))

    def _schedule_retries(self, records: int) -> None:
        batch = self._batch
        if batch.dependency_error is not None:
            logger.error(
                "a dependency is unavailable: %d of %d records handed back (%d not tried), "
                "retried with backoff: %s",
                len(batch.retry_delays),
                records,
                batch.skipped,
                batch.dependency_error,
            )
        if not batch.retry_delays:
            return
        try:
            self._messages.retry_later(batch.retry_delays)
        except DependencyUnavailable as e:
            # They come back after the queue's visibility timeout instead: later, not lost.
            logger.warning("retry delays not set (%s): after the visibility timeout then", e)

    def _run(
        self, message: TaskMessage, receive_count: int, request_id: str, remaining_ms: int
    ) -> None:
        attempt = self._store.start_attempt(message, request_id)
        for pause in UNCOMMITTED_RECHECK_SECONDS:
            if attempt is not Attempt.UNCOMMITTED:
                break
            self._wait(pause)
            attempt = self._store.start_attempt(message, request_id)
        if attempt is Attempt.FINISHED:
            logger.info("task already finished: a redelivery, nothing to do")
            return
        if attempt is Attempt.NOT_ACCEPTED:
            logger.info("no such task: its request was withdrawn (no 202), nothing to do")
            return
        if attempt is Attempt.UNCOMMITTED:
            raise TaskNotCommitted("its API request has not committed it yet")
        try:
            needed_ms = self._runner.estimated_ms(message.type, message.payload) + MARGIN_MS
            if needed_ms > self._batch.started_with_ms:
                raise PermanentTaskFailure(
                    f"needs about {needed_ms} ms, more than a whole invocation of this function "
                    f"({self._batch.started_with_ms} ms): raise its timeout, then redrive it"
                )
            if needed_ms > remaining_ms:
                # Hand the record back rather than let the function time out: a timeout fails
                # the whole batch, finished records included.
                raise TaskDeferred(
                    f"deferred: needs about {needed_ms} ms, {remaining_ms} ms left in this batch"
                )
            result = self._runner.run(message.type, message.payload)
        except TaskDeferred as e:
            self._store.record_failure(message.task_id, str(e), final=False)
            raise
        except TaskFailed as e:
            permanent = isinstance(e, PermanentTaskFailure)
            final = permanent or receive_count >= self._max_receives
            if self._store.record_failure(message.task_id, str(e), final) and final:
                self._metrics.add(TASKS_FAILED, 1, "Count")
            logger.warning(
                "task failed on receive %d of %d%s: %s",
                receive_count,
                self._max_receives,
                "; it goes to the dead-letter queue" if final else "; it is retried",
                e,
            )
            raise
        finished_at = self._store.finish(message.task_id, result)
        if finished_at is None:
            logger.info("task finished meanwhile by another delivery; this result is not kept")
            return
        self._metrics.add(TASKS_PROCESSED, 1, "Count", at=finished_at)
        latency_ms = (finished_at - message.accepted_at).total_seconds() * 1000
        self._metrics.add(END_TO_END_LATENCY, latency_ms, "Milliseconds", at=finished_at)
        logger.info("task done")
