"""The SQS adapter against moto's SQS (in process, no network)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.errors import DependencyUnavailable
from chalicelib.model import TaskMessage
from chalicelib.sqs_queue import SqsTaskQueue


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> SqsTaskQueue:
    url = sqs.create_queue(QueueName="tasks")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"]
    return SqsTaskQueue(sqs, url, dlq)


def message(i: int) -> TaskMessage:
    return TaskMessage(uuid.uuid4(), "echo", {"i": i}, datetime.now(UTC), None, f"req-{i}")


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        received.extend(batch)
    return received


def test_messages_are_sent_in_batches_of_ten_with_their_correlation_id(
    sqs: Any, queue: SqsTaskQueue
) -> None:
    messages = [message(i) for i in range(23)]

    assert queue.send(messages) == []

    received = receive_all(sqs, queue._queue_url)
    assert sorted(json.loads(m["Body"])["payload"]["i"] for m in received) == list(range(23))
    by_task = {json.loads(m["Body"])["task_id"]: m for m in received}
    first = by_task[str(messages[0].task_id)]
    assert first["MessageAttributes"]["correlation_id"]["StringValue"] == "req-0"
    assert TaskMessage.parse(first["Body"], "req-0") == messages[0]


def test_depth_counts_visible_and_in_flight(sqs: Any, queue: SqsTaskQueue) -> None:
    queue.send([message(i) for i in range(3)])
    sqs.receive_message(QueueUrl=queue._queue_url, MaxNumberOfMessages=1)

    depth = queue.depth()

    assert (depth.visible, depth.in_flight) == (2, 1)
    assert queue.dead_letter_depth().visible == 0


def test_an_unreachable_queue_reports_every_task_not_sent(sqs: Any) -> None:
    queue = SqsTaskQueue(sqs, "https://sqs.us-east-1.amazonaws.com/123456789012/missing", "x")
    messages = [message(i) for i in range(12)]

    assert queue.send(messages) == [m.task_id for m in messages]
    with pytest.raises(DependencyUnavailable):
        queue.depth()
