"""The app's routes and its SQS worker through Chalice's test client, on in-memory adapters:
what a client sees, and that a rejected request enqueues and stores nothing."""

from __future__ import annotations

import importlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.service import TaskService
from chalicelib.validation import MAX_BATCH_BYTES, MAX_TASK_BYTES
from chalicelib.wiring import Dependencies
from tests.fakes import InMemoryMetrics, InMemoryTaskQueue, InMemoryTaskStore
from tests.unit.test_app_settings import TRIGGER
from tests.unit.test_worker import accept_tasks_of, event, new_worker

JSON = {"Content-Type": "application/json"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app_module() -> ModuleType:
    """app.py imported with the `local` stage's environment, as Chalice imports it (it reads
    the SQS trigger's settings at import)."""
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    environment = config["stages"]["local"]["environment_variables"]
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**environment, **TRIGGER}.items():
            env.setenv(name, value)
        return importlib.import_module("app")


@pytest.fixture
def client(
    app_module: ModuleType,
    queue: InMemoryTaskQueue,
    store: InMemoryTaskStore,
    metrics: InMemoryMetrics,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    deps = Dependencies(app_module.log)
    deps.metrics = metrics
    deps.service = TaskService(queue, store, metrics)
    deps.worker = new_worker(store, metrics, log=app_module.log)
    monkeypatch.setattr(app_module, "deps", deps)
    with Client(app_module.app) as test_client:
        yield test_client


def post(client: Client, path: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.http.post(path, headers=JSON, body=raw)


def test_a_task_is_accepted_with_its_id_and_status_url(
    client: Client, queue: InMemoryTaskQueue
) -> None:
    response = post(client, "/tasks", {"type": "sleep", "payload": {"ms": 5}})

    assert response.status_code == 202
    body = json.loads(response.body)
    assert body["outcome"] == "accepted" and body["status"] == "queued"
    assert body["status_path"] == f"tasks/{body['id']}"
    assert response.headers["Location"] == body["status_path"]
    assert [str(m.task_id) for m in queue.sent] == [body["id"]]


def test_the_status_url_answers_with_the_task(client: Client) -> None:
    task_id = json.loads(post(client, "/tasks", {"type": "echo"}).body)["id"]

    response = client.http.get(f"/tasks/{task_id}")

    assert response.status_code == 200
    body = json.loads(response.body)
    assert (body["id"], body["status"], body["type"]) == (task_id, "queued", "echo")


def test_the_same_idempotency_key_returns_the_same_task(
    client: Client, queue: InMemoryTaskQueue
) -> None:
    task = {"type": "echo", "idempotency_key": "order-17"}

    first = json.loads(post(client, "/tasks", task).body)
    second = json.loads(post(client, "/tasks", task).body)

    assert second["id"] == first["id"] and second["outcome"] == "duplicate"
    assert len(queue.sent) == 1


def test_a_reused_idempotency_key_for_another_task_is_a_conflict(client: Client) -> None:
    post(client, "/tasks", {"type": "echo", "idempotency_key": "k"})

    response = post(client, "/tasks", {"type": "fail", "idempotency_key": "k"})

    assert response.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        ("/tasks", b"{oops", 400, "body: not valid JSON"),
        ("/tasks", b"", 400, "body: empty"),
        ("/tasks", {"type": "nope"}, 400, "type: must be one of"),
        ("/tasks", {"type": "sleep", "payload": {"ms": 99999}}, 400, "payload.ms"),
        ("/tasks", {"type": "echo", "payload": {"x": "y" * MAX_TASK_BYTES}}, 413, "limit"),
        ("/tasks/batch", {"tasks": []}, 400, "tasks: must be a list"),
        (
            "/tasks/batch",
            {"tasks": [{"type": "echo"}, {"type": "cpu", "payload": {"rounds": -1}}]},
            400,
            "tasks[1].payload.rounds",
        ),
        ("/tasks/batch", b"x" * (MAX_BATCH_BYTES + 1), 413, "limit"),
    ],
)
def test_a_bad_request_names_the_problem_and_changes_nothing(
    client: Client,
    queue: InMemoryTaskQueue,
    store: InMemoryTaskStore,
    path: str,
    body: Any,
    status: int,
    named: str,
) -> None:
    response = post(client, path, body)

    assert response.status_code == status
    assert named in json.loads(response.body)["Message"]
    assert queue.sent == [] and store.rows == {}


def test_a_body_that_is_not_json_is_refused_by_content_type(
    client: Client, queue: InMemoryTaskQueue
) -> None:
    response = client.http.post("/tasks", headers={"Content-Type": "text/plain"}, body=b"hi")

    assert response.status_code == 415
    assert queue.sent == []


def test_a_batch_answers_per_item(client: Client, queue: InMemoryTaskQueue) -> None:
    tasks = [{"type": "echo", "payload": {"i": i}} for i in range(25)]

    response = post(client, "/tasks/batch", {"tasks": tasks})

    assert response.status_code == 202
    body = json.loads(response.body)
    assert body["accepted"] == 25
    assert [r["outcome"] for r in body["results"]] == ["accepted"] * 25
    assert [m.payload["i"] for m in queue.sent] == list(range(25))


def test_an_unknown_task_is_404_and_a_malformed_id_400(client: Client) -> None:
    assert client.http.get(f"/tasks/{uuid.uuid4()}").status_code == 404
    response = client.http.get("/tasks/not-a-uuid")
    assert response.status_code == 400
    assert "task_id" in json.loads(response.body)["Message"]


def test_a_database_outage_is_503_and_enqueues_nothing(
    client: Client, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    store.down = True

    response = post(client, "/tasks", {"type": "echo"})

    assert response.status_code == 503
    assert "retry" in json.loads(response.body)["Message"]
    assert queue.sent == []


def test_a_queue_outage_is_503_and_keeps_nothing(
    client: Client, queue: InMemoryTaskQueue, store: InMemoryTaskStore
) -> None:
    queue.down = True

    assert post(client, "/tasks", {"type": "echo"}).status_code == 503
    assert post(client, "/tasks/batch", {"tasks": [{"type": "echo"}]}).status_code == 503
    assert store.rows == {}


def test_status_reports_queues_and_tasks(client: Client) -> None:
    post(client, "/tasks/batch", {"tasks": [{"type": "echo"}] * 3})

    body = json.loads(client.http.get("/status").body)

    assert body["queue"]["visible"] == 3
    assert body["tasks"]["queued"] == 3
    assert set(body) == {"queue", "dead_letter_queue", "tasks", "processed_last_minute"}


def test_health_is_503_naming_the_failed_dependency(
    client: Client, store: InMemoryTaskStore
) -> None:
    assert client.http.get("/health").status_code == 200
    store.down = True

    response = client.http.get("/health")

    assert response.status_code == 503
    assert json.loads(response.body)["checks"]["queue"] == "ok"


def test_whoami_names_the_execution_environment(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]abc")

    body = json.loads(client.http.get("/whoami").body)

    assert body["log_stream"] == "2026/11/27/[$LATEST]abc"


def test_the_worker_function_answers_with_a_partial_batch_response(
    client: Client, store: InMemoryTaskStore
) -> None:
    accept_tasks_of(store, "sqs_partial_failure")
    response = client.lambda_.invoke("worker", event("sqs_partial_failure"))

    # msg-3 is not a task message: the worker dead-letters it itself.
    assert response.payload == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert sorted(r.status for r in store.rows.values()) == ["done", "retrying"]


def test_chalicelib_logs_only_through_powertools_json_formatter(app_module: ModuleType) -> None:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    handlers = [  # pytest adds its own capture handlers: not ours to check
        h for h in logging.getLogger("chalicelib").handlers if "_pytest" not in type(h).__module__
    ]

    assert handlers  # configured by app.py, not left to propagate
    # Chalice's plain "name - LEVEL - message" handler would print every line twice.
    assert all(isinstance(h.formatter, LambdaPowertoolsFormatter) for h in handlers)


def test_accepted_tasks_are_counted_once_and_rejected_requests_not_at_all(
    client: Client, metrics: InMemoryMetrics
) -> None:
    post(client, "/tasks", {"type": "echo", "idempotency_key": "k"})
    post(client, "/tasks", {"type": "echo", "idempotency_key": "k"})  # a duplicate
    post(client, "/tasks", {"type": "nope"})  # a 400
    post(client, "/tasks/batch", {"tasks": [{"type": "echo"}] * 3})

    assert metrics.total("TasksAccepted") == 4


def test_the_first_invocation_of_an_environment_counts_one_cold_start(
    client: Client, metrics: InMemoryMetrics
) -> None:
    client.http.get("/whoami")
    client.http.get("/whoami")
    client.lambda_.invoke("worker", event("sqs_all_succeed"))

    assert metrics.values("ColdStarts") == [1]
    [init_ms] = metrics.values("InitDuration")
    assert init_ms > 0
    assert metrics.flushes >= 3  # every invocation hands its metrics on


def test_the_worker_function_records_its_batch(
    client: Client, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    accept_tasks_of(store, "sqs_partial_failure")
    client.lambda_.invoke("worker", event("sqs_partial_failure"))

    assert metrics.values("BatchSize") == [3]
    assert metrics.total("TasksProcessed") == 1 and metrics.total("TasksRetried") == 1
