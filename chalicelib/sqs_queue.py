"""The task queue on SQS."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.model import QueueDepth, TaskMessage
from chalicelib.ports import TaskQueue

logger = logging.getLogger(__name__)

SEND_BATCH_LIMIT = 10  # SendMessageBatch's maximum entries
CORRELATION_ATTRIBUTE = "correlation_id"
TASK_TYPE_ATTRIBUTE = "task_type"


class SqsTaskQueue(TaskQueue):
    def __init__(self, sqs: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def send(self, messages: Sequence[TaskMessage]) -> list[uuid.UUID]:
        not_sent: list[uuid.UUID] = []
        for start in range(0, len(messages), SEND_BATCH_LIMIT):
            chunk = messages[start : start + SEND_BATCH_LIMIT]
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
