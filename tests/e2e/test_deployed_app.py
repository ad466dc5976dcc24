"""The app deployed to the local cloud: tasks posted over HTTP end as exactly one row each,
failures reach the dead-letter queue, redeliveries change nothing, bad input changes nothing."""

from __future__ import annotations

import collections
import json
import threading
from typing import Any

import psycopg
import pytest
import requests

from burst.schedule import PlannedRequest
from burst.sender import Answer, SystemClock, send_on_schedule
from chalicelib.model import TaskMessage
from chalicelib.sqs_queue import CORRELATION_ATTRIBUTE
from tests.e2e.conftest import Stage
from tests.polling import wait_for

MAX_RECEIVES = 5


def rows(conninfo: str, task_ids: list[str]) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo, row_factory=psycopg.rows.dict_row) as connection:
        return connection.execute(
            "SELECT * FROM tasks WHERE id = ANY(%s::uuid[])", (task_ids,)
        ).fetchall()


def queue_depth(stage: Stage, url: str) -> tuple[int, int]:
    attributes = stage.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_health_checks_the_queue_and_the_database(stage: Stage) -> None:
    response = stage.http.get(f"{stage.api}health", timeout=60)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"queue": "ok", "database": "ok"}}


def test_a_posted_task_ends_as_exactly_one_done_row(stage: Stage, database_conninfo: str) -> None:
    response = stage.post("tasks", {"type": "sleep", "payload": {"ms": 50}})
    assert response.status_code == 202
    task_id = response.json()["id"]

    task = wait_for(lambda: stage.task(task_id), lambda t: t["status"] == "done", 60, "done")

    [row] = rows(database_conninfo, [task_id])
    assert (row["status"], row["attempts"], row["result"]) == ("done", 1, {"slept_ms": 50})
    assert row["worker_request_id"] and row["correlation_id"]
    assert row["accepted_at"] <= row["started_at"] <= row["finished_at"]
    assert task["timings_ms"]["end_to_end"] > 0


def test_a_fail_task_is_failed_after_five_receives_and_lands_in_the_dlq(stage: Stage) -> None:
    response = stage.post("tasks", {"type": "fail", "payload": {"reason": "e2e says so"}})
    task_id = response.json()["id"]

    task = wait_for(lambda: stage.task(task_id), lambda t: t["status"] == "failed", 90, "failed")
    assert (task["attempts"], task["error"]) == (MAX_RECEIVES, "e2e says so")

    sqs = stage.client("sqs")

    def dead_letters() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=stage.dead_letter_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        return messages

    found = wait_for(
        dead_letters,
        lambda ms: any(json.loads(m["Body"])["task_id"] == task_id for m in ms),
        60,
        "the message in the dead-letter queue",
    )
    message = next(m for m in found if json.loads(m["Body"])["task_id"] == task_id)
    assert (
        message["MessageAttributes"][CORRELATION_ATTRIBUTE]["StringValue"]
        == (task["correlation_id"])
    )


def test_a_redelivered_message_makes_no_duplicate(stage: Stage, database_conninfo: str) -> None:
    task_id = stage.post("tasks", {"type": "echo", "payload": {"n": 1}}).json()["id"]
    wait_for(lambda: stage.task(task_id), lambda t: t["status"] == "done", 60, "done")
    [before] = rows(database_conninfo, [task_id])
    task = stage.task(task_id)
    message = TaskMessage.parse(
        json.dumps(
            {
                "task_id": task_id,
                "type": "echo",
                "payload": {"n": 1},
                "accepted_at": task["accepted_at"],
            }
        ),
        task["correlation_id"],
    )

    # SQS delivers at least once: the same message again, as after a lost delete.
    stage.client("sqs").send_message(
        QueueUrl=stage.queue_url,
        MessageBody=message.body(),
        MessageAttributes={
            CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": message.correlation_id}
        },
    )
    wait_for(lambda: queue_depth(stage, stage.queue_url), lambda d: d == (0, 0), 60, "drain")

    assert rows(database_conninfo, [task_id]) == [before]


BAD_REQUESTS = [
    ("tasks", b"{not json", 400),
    ("tasks", {"type": "teleport"}, 400),
    ("tasks", {"type": "sleep", "payload": {"ms": 10**9}}, 400),
    ("tasks", {"type": "echo", "payload": {"blob": "x" * 20_000}}, 413),
    ("tasks/batch", {"tasks": [{"type": "echo"}, {"type": "cpu", "payload": {}}]}, 400),
    ("tasks/batch", {"tasks": [{"type": "echo"}] * 101}, 400),
]


def test_bad_input_answers_4xx_and_enqueues_nothing(stage: Stage) -> None:
    lambda_client = stage.client("lambda")
    mapping = stage.deployment.deployed.event_source_mappings["worker"]
    lambda_client.update_event_source_mapping(UUID=mapping, Enabled=False)
    try:
        wait_for(
            lambda: lambda_client.get_event_source_mapping(UUID=mapping)["State"],
            lambda state: state == "Disabled",
            30,
            "the mapping to stop",
        )
        wait_for(lambda: queue_depth(stage, stage.queue_url), lambda d: d == (0, 0), 30, "empty")

        statuses = [stage.post(path, body).status_code for path, body, _ in BAD_REQUESTS]
        after_bad = queue_depth(stage, stage.queue_url)
        good = stage.post("tasks", {"type": "echo"}).status_code

        assert statuses == [status for _, _, status in BAD_REQUESTS]
        assert after_bad == (0, 0)
        assert (good, queue_depth(stage, stage.queue_url)) == (202, (1, 0))  # the check can fail
    finally:
        lambda_client.update_event_source_mapping(UUID=mapping, Enabled=True)


def test_a_small_burst_drains_with_one_row_per_accepted_task(
    stage: Stage, database_conninfo: str
) -> None:
    accepted: list[str] = []
    for batch in range(3):
        tasks = [{"type": "echo", "payload": {"batch": batch, "i": i}} for i in range(50)]
        response = stage.post("tasks/batch", {"tasks": tasks})
        assert response.status_code == 202
        accepted += [r["id"] for r in response.json()["results"] if r["outcome"] == "accepted"]

    done = wait_for(
        lambda: rows(database_conninfo, accepted),
        lambda found: sum(r["status"] == "done" for r in found) == len(accepted),
        120,
        "every task done",
    )

    assert len(accepted) == 150
    assert sorted(str(r["id"]) for r in done) == sorted(accepted)


@pytest.mark.parametrize("count", [40])
def test_whoami_burst_is_served_by_several_environments(stage: Stage, count: int) -> None:
    environments: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def whoami(request: PlannedRequest) -> Answer:
        response = requests.get(f"{stage.api}whoami", timeout=30)
        with lock:
            environments[response.json().get("log_stream", "?")] += 1
        return Answer(response.status_code)

    spike = [PlannedRequest(n, 0.0, n, ()) for n in range(count)]
    log = send_on_schedule(spike, whoami, threads=4, max_seconds=60, clock=SystemClock())

    assert collections.Counter(s.answer.status for s in log.sent) == {200: count}
    assert 2 <= len(environments) <= 4
