"""The task queue on SQS."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.model import QueueDepth, RedeliverySettings, TaskMessage
from chalicelib.ports import Deadline, ReceivedMessages, TaskQueue

logger = logging.getLogger(__name__)

SEND_BATCH_LIMIT = 10  # SendMessageBatch's maximum entries
CHANGE_VISIBILITY_BATCH_LIMIT = 10  # ChangeMessageVisibilityBatch's maximum entries
MAX_DELAY_SECONDS = 900  # SendMessage's DelaySeconds maximum
CORRELATION_ATTRIBUTE = "correlation_id"
TASK_TYPE_ATTRIBUTE = "task_type"
FAILURE_REASON_ATTRIBUTE = "failure_reason"  # on a message the worker dead-lettered itself
# A SendMessageBatch takes a few ms; under overload, up to the client's timeouts (wiring.py).
# Below this much time left, a request stops sending and withdraws what it stored.
SEND_BUDGET_MS = 2000


class SqsTaskQueue(TaskQueue):
    def __init__(self, sqs: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def send(
        self, messages: Sequence[TaskMessage], deadline: Deadline | None = None
    ) -> list[uuid.UUID]:
        not_sent: list[uuid.UUID] = []
        for start in range(0, len(messages), SEND_BATCH_LIMIT):
            chunk = messages[start : start + SEND_BATCH_LIMIT]
            if deadline is not None and deadline.remaining_ms() < SEND_BUDGET_MS:
                logger.warning(
                    "%d ms left: %d tasks not sent", deadline.remaining_ms(), len(messages) - start
                )
                not_sent.extend(m.task_id for m in messages[start:])
                break
            failed = self._send_batch(chunk)
            if failed:  # SQS failures are per entry and often transient: one retry of just those
                retry = set(failed)
                failed = self._send_batch([m for m in chunk if m.task_id in retry])
            not_sent.extend(failed)
        return not_sent

    def _send_batch(self, messages: Sequence[TaskMessage]) -> list[uuid.UUID]:
        entries = [
            {
                "Id": str(index),
                "MessageBody": message.body(),
                "MessageAttributes": {
                    CORRELATION_ATTRIBUTE: {
                        "DataType": "String",
                        "StringValue": message.correlation_id or "none",
                    },
                    TASK_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": message.type},
                },
            }
            for index, message in enumerate(messages)
        ]
        try:
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as e:
            logger.warning("SendMessageBatch of %d tasks failed: %s", len(messages), e)
            return [m.task_id for m in messages]
        failed = answer.get("Failed", [])
        for entry in failed:
            logger.warning("SQS refused a task: %s %s", entry.get("Code"), entry.get("Message"))
        return [messages[int(entry["Id"])].task_id for entry in failed]

    def depth(self) -> QueueDepth:
        return self._depth(self._queue_url)

    def dead_letter_depth(self) -> QueueDepth:
        return self._depth(self._dead_letter_queue_url)

    def redelivery_settings(self) -> RedeliverySettings:
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=["VisibilityTimeout", "RedrivePolicy", "CreatedTimestamp"],
            )["Attributes"]
        except (BotoCoreError, ClientError) as e:
            raise DependencyUnavailable(f"SQS GetQueueAttributes failed: {e}") from e
        redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        max_receives = redrive.get("maxReceiveCount")
        return RedeliverySettings(
            visibility_timeout_s=int(attributes["VisibilityTimeout"]),
            max_receives=int(max_receives) if max_receives is not None else None,
            created_at=datetime.fromtimestamp(float(attributes["CreatedTimestamp"]), UTC),
        )

    def _depth(self, queue_url: str) -> QueueDepth:
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        except (BotoCoreError, ClientError) as e:
            raise DependencyUnavailable(f"SQS GetQueueAttributes failed: {e}") from e
        return QueueDepth(
            visible=int(attributes["ApproximateNumberOfMessages"]),
            in_flight=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            delayed=int(attributes["ApproximateNumberOfMessagesDelayed"]),
        )


class SqsReceivedMessages(ReceivedMessages):
    """The worker's calls on the messages of its batch (ports.ReceivedMessages)."""

    def __init__(self, sqs: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def retry_later(self, delays: Sequence[tuple[str, int]]) -> None:
        for start in range(0, len(delays), CHANGE_VISIBILITY_BATCH_LIMIT):
            entries = [
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                for index, (handle, seconds) in enumerate(
                    delays[start : start + CHANGE_VISIBILITY_BATCH_LIMIT]
                )
            ]
            try:
                answer = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
            except (BotoCoreError, ClientError) as e:
                raise DependencyUnavailable(f"SQS ChangeMessageVisibilityBatch failed: {e}") from e
            for entry in answer.get("Failed", []):
                # The message then comes back after the visibility timeout: later, not lost.
                logger.warning("SQS kept a message's visibility: %s", entry.get("Message"))

    def dead_letter(self, body: str, attributes: dict[str, Any], reason: str) -> None:
        self._send(
            self._dead_letter_queue_url,
            body,
            {
                **attributes,
                FAILURE_REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]},
            },
            0,
        )

    def requeue(self, body: str, attributes: dict[str, Any], delay_s: int) -> None:
        self._send(self._queue_url, body, attributes, min(delay_s, MAX_DELAY_SECONDS))

    def _send(self, queue_url: str, body: str, attributes: dict[str, Any], delay_s: int) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=body,
                MessageAttributes=sqs_attributes(attributes),
                DelaySeconds=delay_s,
            )
        except (BotoCoreError, ClientError) as e:
            raise DependencyUnavailable(f"SQS SendMessage failed: {e}") from e


def sqs_attributes(record_attributes: dict[str, Any]) -> dict[str, Any]:
    """A received record's messageAttributes (Lambda's camelCase event shape) as SendMessage's
    MessageAttributes."""
    converted = {}
    for name, value in record_attributes.items():
        data_type = value.get("dataType") or value.get("DataType") or "String"
        string = value.get("stringValue", value.get("StringValue"))
        if string is not None:
            converted[name] = {"DataType": data_type, "StringValue": string}
    return converted
