"""scripts/redrive's logic (infra/deployment/redrive.py) against moto's SQS and rows in memory:
a failed task's message moves back with its row reopened; anything else stays, counted by
reason; a send that fails puts the row back; a dry run changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import Mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.model import TaskMessage
from chalicelib.sqs_queue import CORRELATION_ATTRIBUTE
from deployment import redrive
from deployment.redrive import NO_ROW, NOT_A_TASK, REOPEN_LOST, SEND_FAILED, Queues


class InMemoryRows:
    """RowStore over a dict: id -> status; records every write."""

    def __init__(self, statuses: dict[uuid.UUID, str] | None = None) -> None:
        self.statuses = dict(statuses or {})
        self.writes: list[tuple[str, uuid.UUID]] = []

    def status(self, task_id: uuid.UUID) -> str | None:
        return self.statuses.get(task_id)

    def reopen(self, task_id: uuid.UUID) -> bool:
        self.writes.append(("reopen", task_id))
        if self.statuses.get(task_id) != "failed":
            return False
        self.statuses[task_id] = "queued"
        return True

    def fail_again(self, task_id: uuid.UUID) -> None:
        self.writes.append(("fail_again", task_id))
        if self.statuses.get(task_id) == "queued":
            self.statuses[task_id] = "failed"


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queues(sqs: Any) -> Queues:
    return Queues(
        sqs.create_queue(QueueName="tasks")["QueueUrl"],
        sqs.create_queue(QueueName="tasks-dlq")["QueueUrl"],
    )


def dead_letter(sqs: Any, queues: Queues, body: str, correlation_id: str = "req-1") -> None:
    sqs.send_message(
        QueueUrl=queues.dead_letter_queue_url,
        MessageBody=body,
        MessageAttributes={
            CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": correlation_id}
        },
    )


def task_message(task_type: str = "echo") -> TaskMessage:
    return TaskMessage(uuid.uuid4(), task_type, {"n": 1}, datetime.now(UTC), "key-1", "req-1")


def everything_in(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=30
    ).get("Messages", []):
        found.extend(batch)
    return found


def test_a_failed_tasks_message_moves_back_with_its_row_reopened(sqs: Any, queues: Queues) -> None:
    # GIVEN a dead-lettered task whose row is failed
    message = task_message()
    dead_letter(sqs, queues, message.body(), correlation_id="req-42")
    rows = InMemoryRows({message.task_id: "failed"})

    # WHEN it is redriven
    result = redrive.redrive(sqs, queues, rows)

    # THEN the row is queued, the message is in the task queue (attributes kept), not the DLQ
    assert result.redriven == [str(message.task_id)]
    assert not result.left
    assert rows.statuses[message.task_id] == "queued"
    [moved] = everything_in(sqs, queues.task_queue_url)
    assert moved["Body"] == message.body()
    assert moved["MessageAttributes"][CORRELATION_ATTRIBUTE]["StringValue"] == "req-42"
    assert everything_in(sqs, queues.dead_letter_queue_url) == []
    assert result.summary() == "1 redriven, 0 left in the DLQ"


def test_what_cannot_be_redriven_stays_in_the_dlq_counted_by_reason(
    sqs: Any, queues: Queues
) -> None:
    done, missing = task_message(), task_message()
    dead_letter(sqs, queues, "{not json")
    dead_letter(sqs, queues, done.body())
    dead_letter(sqs, queues, missing.body())
    rows = InMemoryRows({done.task_id: "done"})

    result = redrive.redrive(sqs, queues, rows)

    assert result.redriven == []
    assert result.left == {NOT_A_TASK: 1, redrive.not_failed("done"): 1, NO_ROW: 1}
    assert rows.statuses == {done.task_id: "done"}  # nothing reopened
    assert everything_in(sqs, queues.task_queue_url) == []
    # made visible again at once, for whoever inspects the DLQ next
    assert len(everything_in(sqs, queues.dead_letter_queue_url)) == 3
    assert "0 redriven, 3 left in the DLQ: " in result.summary()


def test_a_second_copy_of_a_redriven_message_stays_and_duplicates_nothing(
    sqs: Any, queues: Queues
) -> None:
    # GIVEN two copies in the DLQ (a crash between send and delete of an earlier redrive)
    message = task_message()
    dead_letter(sqs, queues, message.body())
    dead_letter(sqs, queues, message.body())
    rows = InMemoryRows({message.task_id: "failed"})

    result = redrive.redrive(sqs, queues, rows)

    # THEN one copy moves; the other finds the row queued and stays
    assert result.redriven == [str(message.task_id)]
    assert result.left == {redrive.not_failed("queued"): 1}
    assert len(everything_in(sqs, queues.task_queue_url)) == 1


def test_a_dry_run_counts_and_changes_nothing(sqs: Any, queues: Queues) -> None:
    failed = [task_message() for _ in range(3)]
    for message in failed:
        dead_letter(sqs, queues, message.body())
    dead_letter(sqs, queues, "[]")
    rows = InMemoryRows({m.task_id: "failed" for m in failed})

    result = redrive.redrive(sqs, queues, rows, dry_run=True)

    assert sorted(result.redriven) == sorted(str(m.task_id) for m in failed)
    assert result.left == {NOT_A_TASK: 1}
    assert rows.writes == []
    assert everything_in(sqs, queues.task_queue_url) == []
    assert len(everything_in(sqs, queues.dead_letter_queue_url)) == 4
    assert result.summary().startswith("3 would be redriven, 1 left in the DLQ")


def test_max_bounds_how_many_messages_are_read(sqs: Any, queues: Queues) -> None:
    failed = [task_message() for _ in range(25)]
    for message in failed:
        dead_letter(sqs, queues, message.body())
    rows = InMemoryRows({m.task_id: "failed" for m in failed})

    result = redrive.redrive(sqs, queues, rows, max_messages=12)

    assert len(result.redriven) == 12
    assert len(everything_in(sqs, queues.task_queue_url)) == 12
    assert len(everything_in(sqs, queues.dead_letter_queue_url)) == 13
    assert sum(status == "queued" for status in rows.statuses.values()) == 12


def test_a_failed_send_puts_the_row_back_to_failed_and_keeps_the_message(queues: Queues) -> None:
    message = task_message()
    sqs = Mock(
        spec=[
            "receive_message",
            "send_message",
            "delete_message",
            "change_message_visibility_batch",
        ]
    )
    sqs.receive_message.side_effect = [
        {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": message.body()}]},
        {"Messages": []},
    ]
    sqs.send_message.side_effect = ClientError({"Error": {"Code": "Throttled"}}, "SendMessage")
    rows = InMemoryRows({message.task_id: "failed"})

    result = redrive.redrive(sqs, queues, rows)

    assert result.redriven == []
    assert result.left == {SEND_FAILED: 1}
    assert rows.statuses[message.task_id] == "failed"
    assert rows.writes == [("reopen", message.task_id), ("fail_again", message.task_id)]
    sqs.delete_message.assert_not_called()
    [call] = sqs.change_message_visibility_batch.call_args_list
    assert call.kwargs["Entries"] == [{"Id": "0", "ReceiptHandle": "r1", "VisibilityTimeout": 0}]


def test_a_row_that_changed_while_being_reopened_is_left_alone(sqs: Any, queues: Queues) -> None:
    message = task_message()
    dead_letter(sqs, queues, message.body())

    class RaceRows(InMemoryRows):
        def reopen(self, task_id: uuid.UUID) -> bool:
            self.statuses[task_id] = "queued"  # someone else reopened it first
            return super().reopen(task_id)

    rows = RaceRows({message.task_id: "failed"})

    result = redrive.redrive(sqs, queues, rows)

    assert result.left == {REOPEN_LOST: 1}
    assert everything_in(sqs, queues.task_queue_url) == []
    assert len(everything_in(sqs, queues.dead_letter_queue_url)) == 1


def test_the_command_line_refuses_a_max_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        redrive.main(["--max", "0"])
    assert exit_info.value.code == 2
    assert "give 1 or more" in capsys.readouterr().err
