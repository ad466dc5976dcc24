"""Move a stage's dead-letter messages back to its task queue, once their cause is fixed.

SQS has a tool for this (StartMessageMoveTask; LocalStack 2026.3 runs it too), but it moves
messages blindly, and a dead-lettered task's row is `failed`: final. The worker's first write
(TaskStore.start_attempt) is conditional on a row that is not done or failed, so a moved message
would find its task finished and do nothing. Each message is therefore redriven on its own:

1. parse it as a task message (chalicelib.model.TaskMessage);
2. reopen its row, `failed` -> `queued`, conditionally (attempts kept; the old error kept until
   the task finishes, which overwrites it);
3. send the message to the task queue (its body and attributes, the correlation id among them);
4. delete it from the dead-letter queue.

A crash between 3 and 4 leaves the message in both queues: the second copy finds the task no
longer failed and stays in the dead-letter queue, reported, and the worker's conditional writes
keep the effect once. A crash between 2 and 3 leaves a `queued` row with no message: the
reconciler's case (it re-sends what waits too long). Rows are never inserted here, so never
duplicated. A failed send puts the row back to `failed`.

What is not a task message, or has no row, or whose row is not `failed` (another copy already
redriven, or a task dead-lettered while the database was down), stays in the dead-letter queue
and is counted by reason.

    python -m deployment.redrive [--stage local] [--max N] [--dry-run]
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import MalformedMessage, TaskError
from chalicelib.model import TaskMessage
from deployment import database, pipeline, stack
from deployment.chalice_stage import STAGE, DeployError
from localcloud.aws import client_for_running
from localcloud.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

# Long enough for one message's reopen + send + delete; messages left in the queue are made
# visible again at the end, so this only holds them while the redrive runs.
RECEIVE_VISIBILITY_SECONDS = 60
SQS_BATCH = 10  # the most ReceiveMessage / ChangeMessageVisibilityBatch take at once

NOT_A_TASK = "not a task message"
NO_ROW = "no row for its task"
SEND_FAILED = "sending to the task queue failed"
REOPEN_LOST = "its row changed while being reopened"


def not_failed(status: str) -> str:
    return f"its row is {status}, not failed"


class RowStore(Protocol):
    """The tasks' rows, as far as a redrive touches them. Every write is conditional."""

    def status(self, task_id: uuid.UUID) -> str | None:
        """The row's status, or None when the task has no row."""

    def reopen(self, task_id: uuid.UUID) -> bool:
        """`failed` -> `queued` (finished_at cleared, attempts and error kept); False when the
        row was not failed."""

    def fail_again(self, task_id: uuid.UUID) -> None:
        """Undo reopen (`queued` -> `failed`) when the message could not be sent."""


class PostgresRows:
    """RowStore on the app's tasks table (its connection string from the stage's secret)."""

    def __init__(self, conninfo: str) -> None:
        self._connection = psycopg.connect(conninfo, autocommit=True)

    def status(self, task_id: uuid.UUID) -> str | None:
        row = self._connection.execute(
            "SELECT status FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def reopen(self, task_id: uuid.UUID) -> bool:
        cursor = self._connection.execute(
            "UPDATE tasks SET status = 'queued', finished_at = NULL "
            "WHERE id = %s AND status = 'failed'",
            (task_id,),
        )
        return cursor.rowcount == 1

    def fail_again(self, task_id: uuid.UUID) -> None:
        self._connection.execute(
            "UPDATE tasks SET status = 'failed', finished_at = clock_timestamp() "
            "WHERE id = %s AND status = 'queued'",
            (task_id,),
        )

    def close(self) -> None:
        self._connection.close()


@dataclass
class RedriveResult:
    dry_run: bool
    redriven: list[str] = field(default_factory=list)  # task ids, in the order moved
    left: Counter[str] = field(default_factory=Counter)  # reason -> messages left in the DLQ
    not_deleted: int = 0  # sent but still in the DLQ too: a harmless duplicate

    def summary(self) -> str:
        verb = "would be redriven" if self.dry_run else "redriven"
        left = sum(self.left.values())
        line = f"{len(self.redriven)} {verb}, {left} left in the DLQ"
        if left:
            line += ": " + ", ".join(f"{reason} ({n})" for reason, n in self.left.most_common())
        if self.not_deleted:
            line += (
                f"; {self.not_deleted} sent but not deleted from the DLQ (a second copy, which "
                "the next redrive leaves there: the task is no longer failed)"
            )
        return line


@dataclass(frozen=True)
class Queues:
    task_queue_url: str
    dead_letter_queue_url: str


def received(sqs: Any, queue_url: str, limit: int | None) -> Iterator[dict[str, Any]]:
    """Messages of `queue_url`, each once, until it answers none or `limit` were handed out."""
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        want = SQS_BATCH if limit is None else min(SQS_BATCH, limit - len(seen))
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=want,
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def sendable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A received message's attributes as SendMessage takes them (DataType and one value)."""
    keep = ("DataType", "StringValue", "BinaryValue")
    return {
        name: {key: value[key] for key in keep if key in value}
        for name, value in attributes.items()
    }


def reason_to_leave(message: dict[str, Any], rows: RowStore) -> tuple[str | None, uuid.UUID]:
    """Why the message stays in the DLQ (None: it may go), and its task's id."""
    try:
        task = TaskMessage.parse(message["Body"], None)
    except MalformedMessage:
        return NOT_A_TASK, uuid.UUID(int=0)
    status = rows.status(task.task_id)
    if status is None:
        return NO_ROW, task.task_id
    if status != "failed":
        return not_failed(status), task.task_id
    return None, task.task_id


def move(
    sqs: Any,
    queues: Queues,
    message: dict[str, Any],
    rows: RowStore,
    task_id: uuid.UUID,
    result: RedriveResult,
) -> bool:
    """Reopen, send, delete one message; False when it stays in the DLQ (counted)."""
    if not rows.reopen(task_id):
        result.left[REOPEN_LOST] += 1
        return False
    try:
        sqs.send_message(
            QueueUrl=queues.task_queue_url,
            MessageBody=message["Body"],
            MessageAttributes=sendable_attributes(message.get("MessageAttributes", {})),
        )
    except (BotoCoreError, ClientError) as e:
        logger.warning("task %s not redriven, its row failed again: %s", task_id, e)
        rows.fail_again(task_id)
        result.left[SEND_FAILED] += 1
        return False
    result.redriven.append(str(task_id))
    try:
        sqs.delete_message(
            QueueUrl=queues.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
    except (BotoCoreError, ClientError) as e:
        logger.warning("task %s redriven but still in the DLQ (harmless copy): %s", task_id, e)
        result.not_deleted += 1
    return True


def make_visible(sqs: Any, queue_url: str, receipts: list[str]) -> None:
    """What the redrive held and left: visible again for the next reader."""
    for start in range(0, len(receipts), SQS_BATCH):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(receipts[start : start + SQS_BATCH])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def redrive(
    sqs: Any,
    queues: Queues,
    rows: RowStore,
    *,
    max_messages: int | None = None,
    dry_run: bool = False,
) -> RedriveResult:
    """Redrive up to `max_messages` dead-letter messages (all by default); `dry_run` counts
    what would move and changes nothing."""
    result = RedriveResult(dry_run)
    held: list[str] = []
    try:
        for message in received(sqs, queues.dead_letter_queue_url, max_messages):
            reason, task_id = reason_to_leave(message, rows)
            if reason is not None:
                result.left[reason] += 1
            elif dry_run:
                result.redriven.append(str(task_id))
            elif move(sqs, queues, message, rows, task_id, result):
                continue
            held.append(message["ReceiptHandle"])
    finally:
        make_visible(sqs, queues.dead_letter_queue_url, held)
    return result


# --- the command line (scripts/redrive) ------------------------------------------------------


def stage_queues(running: Mapping[str, Any], stage: str) -> tuple[Queues, str]:
    """The stage's queues and its database secret, from its stack's outputs."""
    cloudformation = client_for_running(running, "cloudformation")
    outputs = stack.stack_outputs(cloudformation, stack.stack_name(stage))
    queues = Queues(outputs["TaskQueueUrl"], outputs["DeadLetterQueueUrl"])
    return queues, outputs["DatabaseSecretId"]


def run(
    cfg: Settings, stage: str, max_messages: int | None, dry_run: bool
) -> tuple[RedriveResult, Queues]:
    running = pipeline.running_cloud(cfg)
    queues, secret_id = stage_queues(running, stage)
    rows = PostgresRows(database.conninfo(running, secret_id))
    sqs = client_for_running(running, "sqs")
    try:
        return redrive(sqs, queues, rows, max_messages=max_messages, dry_run=dry_run), queues
    finally:
        rows.close()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/redrive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default=STAGE, help="the deployed stage (default %(default)s)")
    parser.add_argument("--max", type=positive, default=None, help="redrive at most N messages")
    parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = Settings.from_env()
        dry = " (dry run: nothing changes)" if args.dry_run else ""
        print(f"redriving the dead-letter queue of stage {args.stage!r}{dry}")
        result, queues = run(cfg, args.stage, args.max, args.dry_run)
    except (SettingsError, DeployError, stack.StackError, TaskError) as error:
        print(f"redrive: {error}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError, psycopg.Error) as error:
        print(f"redrive: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    if result.left:
        print(
            "what stays is in the DLQ; inspect it with `awslocal sqs receive-message "
            f"--queue-url {queues.dead_letter_queue_url} --message-attribute-names All`"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
