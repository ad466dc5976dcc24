"""The SQS worker: one function per record, and a partial batch response, so only the records
that failed go back to the queue (the deploy turns on ReportBatchItemFailures).

Delivery is at least once; the effect is exactly once: every write is conditional on the row's
status (ports.TaskStore), so a redelivered message finds its task done and does nothing. The
metrics follow the writes: a task is counted done or failed only by the write that made it so.

Metrics per invocation: BatchSize once; per record TasksProcessed and EndToEndLatency (done),
TasksFailed (marked failed on its last receive) or TasksRetried (handed back to the queue with
receives left); handed to the metrics port at the end of the batch, which publishes at most
once a second (wiring.py)."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chalicelib.errors import MalformedMessage, TaskDeferred, TaskFailed
from chalicelib.model import TaskMessage
from chalicelib.ports import (
    BATCH_SIZE,
    END_TO_END_LATENCY,
    TASKS_FAILED,
    TASKS_PROCESSED,
    TASKS_RETRIED,
    Metrics,
    TaskStore,
)
from chalicelib.sqs_queue import CORRELATION_ATTRIBUTE
from chalicelib.task_types import TaskRunner

logger = logging.getLogger(__name__)

# Time a record needs beyond its task's own: two writes to the database, logging.
MARGIN_MS = 1000


class Worker:
    def __init__(
        self,
        store: TaskStore,
        runner: TaskRunner,
        max_receives: int,
        log: Logger,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._runner = runner
        self._max_receives = max_receives
        self._log = log
        self._metrics = metrics
        # raise_on_entire_batch_failure=False: when every record fails, answer with all of
        # them as failures (the same outcome for SQS) instead of raising.
        self._processor = BatchProcessor(
            event_type=EventType.SQS, raise_on_entire_batch_failure=False
        )

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda handler's body: {"batchItemFailures": [{"itemIdentifier": id}, ...]}."""
        self._metrics.add(BATCH_SIZE, len(event.get("Records") or []), "Count")
        try:
            response = process_partial_response(
                event=event,
                record_handler=self.process_record,
                processor=self._processor,
                context=context,
            )
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
            message = TaskMessage.parse(record.body, correlation_id)
            self._log.append_keys(task_id=str(message.task_id), task_type=message.type)
            self._run(
                message,
                receive_count,
                lambda_context.aws_request_id,
                lambda_context.get_remaining_time_in_millis(),
            )
        except Exception as e:  # any failure hands the record back to the queue
            if isinstance(e, MalformedMessage):
                logger.exception(
                    "not a task message; after %d receives it goes to the DLQ", self._max_receives
                )
            self._count_handed_back(receive_count)
            raise
        finally:
            self._log.remove_keys([*keys, "task_id", "task_type"])

    def _run(
        self, message: TaskMessage, receive_count: int, request_id: str, remaining_ms: int
    ) -> None:
        if not self._store.start_attempt(message, request_id):
            logger.info("task already finished: a redelivery, nothing to do")
            return
        try:
            needed_ms = self._runner.estimated_ms(message.type, message.payload) + MARGIN_MS
            if needed_ms > remaining_ms:
                # Hand the record back rather than let the function time out: a timeout fails
                # the whole batch, finished records included.
                raise TaskDeferred(
                    f"deferred: needs about {needed_ms} ms, {remaining_ms} ms left in this batch"
                )
            result = self._runner.run(message.type, message.payload)
        except TaskFailed as e:
            final = receive_count >= self._max_receives
            if self._store.record_failure(message.task_id, str(e), final) and final:
                self._metrics.add(TASKS_FAILED, 1, "Count")
            logger.warning(
                "task failed on receive %d of %d%s: %s",
                receive_count,
                self._max_receives,
                "; it goes to the dead-letter queue" if final else "; SQS will retry it",
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

    def _count_handed_back(self, receive_count: int) -> None:
        """A failed record goes back to the queue; count it if SQS will deliver it again (on
        its last receive, SQS moves it to the dead-letter queue instead)."""
        if receive_count < self._max_receives:
            self._metrics.add(TASKS_RETRIED, 1, "Count")
