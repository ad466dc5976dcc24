"""The SQS worker, fed canonical SQS events (tests/events/): partial batch responses, retries
with backoff to the dead-letter queue, permanent failures, outages that dead-letter nothing, and
redeliveries that change nothing."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from aws_lambda_powertools import Logger

from chalicelib.errors import MalformedMessage
from chalicelib.model import NewTask, TaskMessage
from chalicelib.settings import Backoff
from chalicelib.task_types import TaskRunner
from chalicelib.worker import Worker
from tests.fakes import InMemoryMetrics, InMemoryTaskStore, RecordedMessages

EVENTS = Path(__file__).resolve().parents[1] / "events"
ECHO_ID = uuid.UUID("0b6f3c7e-4d0c-4f7a-9a43-1d7c1a5e0001")
FAIL_ID = uuid.UUID("0b6f3c7e-4d0c-4f7a-9a43-1d7c1a5e0002")


@dataclass
class FakeContext:
    aws_request_id: str = "worker-req-1"
    remaining_ms: int = 30_000
    function_name: str = "serverless-scaling-local-worker"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:worker"
    # What the batch began with (the function's timeout, about); `remaining_ms` after that.
    at_start_ms: int | None = None
    _calls: int = 0

    def get_remaining_time_in_millis(self) -> int:
        self._calls += 1
        if self._calls == 1 and self.at_start_ms is not None:
            return self.at_start_ms
        return self.remaining_ms


BACKOFF = Backoff(base_s=2, max_s=60)


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


def accept_tasks_of(store: InMemoryTaskStore, *names: str) -> None:
    """The rows the API committed for the task messages of these events."""
    for name in names:
        for record in event(name)["Records"]:
            try:
                message = TaskMessage.parse(record["body"], "req-abc")
            except MalformedMessage:
                continue  # not a task message: the API never stored it
            if message.task_id in store.rows:
                continue
            new = NewTask(
                message.task_id,
                message.type,
                message.payload,
                message.idempotency_key,
                "req-abc",
                message.accepted_at,
            )
            store.rows[new.id] = new.pending().committed()


@pytest.fixture
def store() -> InMemoryTaskStore:
    store = InMemoryTaskStore()
    accept_tasks_of(store, "sqs_all_succeed", "sqs_partial_failure", "sqs_last_receive_failure")
    return store


@pytest.fixture
def messages() -> RecordedMessages:
    return RecordedMessages()


def new_worker(
    store: InMemoryTaskStore,
    metrics: InMemoryMetrics,
    messages: RecordedMessages | None = None,
    runner: TaskRunner | None = None,
    log: Logger | None = None,
    backoff: Backoff = BACKOFF,
) -> Worker:
    return Worker(
        store,
        runner or TaskRunner(sleep=lambda s: None),
        5,
        log or Logger(service="test"),
        metrics,
        messages or RecordedMessages(),
        backoff,
        wait=lambda seconds: None,
    )


@pytest.fixture
def worker(
    store: InMemoryTaskStore, metrics: InMemoryMetrics, messages: RecordedMessages
) -> Worker:
    return new_worker(store, metrics, messages)


def test_a_successful_batch_reports_no_failures_and_every_task_is_done(
    worker: Worker, store: InMemoryTaskStore
) -> None:
    response = worker.handle(event("sqs_all_succeed"), FakeContext())

    assert response == {"batchItemFailures": []}
    assert [r.status for r in store.rows.values()] == ["done", "done", "done"]
    assert {r.worker_request_id for r in store.rows.values()} == {"worker-req-1"}
    assert {r.correlation_id for r in store.rows.values()} == {"req-abc"}


def test_only_the_failed_records_go_back(worker: Worker, store: InMemoryTaskStore) -> None:
    response = worker.handle(event("sqs_partial_failure"), FakeContext())

    # msg-3 is not a task message: into the dead-letter queue at once, not retried.
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert store.rows[ECHO_ID].status == "done"
    failed = store.rows[FAIL_ID]
    assert (failed.status, failed.error, failed.finished_at) == ("retrying", "told to fail", None)


def test_a_failure_on_the_last_receive_marks_the_task_failed(
    worker: Worker, store: InMemoryTaskStore
) -> None:
    response = worker.handle(event("sqs_last_receive_failure"), FakeContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    row = store.rows[FAIL_ID]
    assert (row.status, row.error) == ("failed", "told to fail")
    assert row.finished_at is not None


def test_a_redelivered_message_makes_no_second_row_and_no_second_run(
    worker: Worker, store: InMemoryTaskStore
) -> None:
    worker.handle(event("sqs_all_succeed"), FakeContext())
    done = store.rows[ECHO_ID]

    response = worker.handle(event("sqs_redelivery"), FakeContext(aws_request_id="worker-req-2"))

    assert response == {"batchItemFailures": []}
    assert len(store.rows) == 3
    assert store.rows[ECHO_ID] == done  # same attempts, same request id, same finish time


def test_a_store_outage_sends_the_whole_batch_back(
    worker: Worker, store: InMemoryTaskStore
) -> None:
    store.down = True

    response = worker.handle(event("sqs_all_succeed"), FakeContext())

    assert len(response["batchItemFailures"]) == 3


@pytest.fixture
def chalicelib_logger() -> Iterator[logging.Logger]:
    """The `chalicelib` logger, put back as it was afterwards (a test reconfigures it)."""
    logger = logging.getLogger("chalicelib")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield logger
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def test_log_lines_carry_the_correlation_id_and_task_id(
    store: InMemoryTaskStore,
    capsys: pytest.CaptureFixture[str],
    chalicelib_logger: logging.Logger,
) -> None:
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    log = Logger(service="test-correlation")
    copy_config_to_registered_loggers(source_logger=log, include={"chalicelib"})
    worker = new_worker(store, InMemoryMetrics(), runner=TaskRunner(), log=log)

    worker.handle(event("sqs_redelivery"), FakeContext())

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    done = [line for line in lines if line["message"] == "task done"]
    assert done, lines
    assert done[0]["correlation_id"] == "req-abc"
    assert done[0]["task_id"] == str(ECHO_ID)


def test_a_task_that_would_outrun_the_invocation_goes_back_untried(
    worker: Worker, store: InMemoryTaskStore
) -> None:
    # sqs_all_succeed holds echo, sleep 0 ms and cpu 10 rounds: each needs about 1 s of margin.
    response = worker.handle(
        event("sqs_all_succeed"), FakeContext(remaining_ms=900, at_start_ms=30_000)
    )

    assert len(response["batchItemFailures"]) == 3
    assert {r.status for r in store.rows.values()} == {"retrying"}
    assert all(r.error and r.error.startswith("deferred") for r in store.rows.values())


# --- metrics: what each batch records, published once per batch ---------------------------------


def test_a_successful_batch_records_its_size_each_task_done_and_its_latency(
    worker: Worker, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_all_succeed"), FakeContext())

    assert metrics.totals() == {"BatchSize": 3, "TasksProcessed": 3, "EndToEndLatency": ANY}
    assert metrics.values("BatchSize") == [3]  # one value per invocation
    # accepted_at -> finished_at as stored, stamped with the moment the task finished
    expected = sorted(
        (row.finished_at, (row.finished_at - row.accepted_at).total_seconds() * 1000)
        for row in store.rows.values()
        if row.finished_at is not None
    )
    latencies = [s for s in metrics.samples if s.name == "EndToEndLatency"]
    assert sorted((s.at, s.value) for s in latencies) == expected
    assert len(expected) == 3 and {s.unit for s in latencies} == {"Milliseconds"}
    assert metrics.flushes == 1


def test_failed_records_with_receives_left_count_as_retried(
    worker: Worker, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_partial_failure"), FakeContext())

    # msg-1 done; msg-2 failed on receive 2 of 5 and goes back; msg-3 is not a task message.
    assert metrics.totals() == {
        "BatchSize": 3,
        "TasksProcessed": 1,
        "EndToEndLatency": ANY,
        "TasksRetried": 1,
    }


def test_a_failure_on_the_last_receive_counts_as_failed_not_retried(
    worker: Worker, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_last_receive_failure"), FakeContext())

    assert metrics.totals() == {"BatchSize": 1, "TasksFailed": 1}
    assert metrics.flushes == 1


def test_deferred_tasks_count_as_retried(worker: Worker, metrics: InMemoryMetrics) -> None:
    worker.handle(event("sqs_all_succeed"), FakeContext(remaining_ms=900, at_start_ms=30_000))

    assert metrics.totals() == {"BatchSize": 3, "TasksRetried": 3}


def test_a_store_outage_counts_every_record_as_retried(
    worker: Worker, store: InMemoryTaskStore, metrics: InMemoryMetrics
) -> None:
    store.down = True

    worker.handle(event("sqs_all_succeed"), FakeContext())

    assert metrics.totals() == {"BatchSize": 3, "TasksRetried": 3}
    assert metrics.flushes == 1


def test_a_redelivery_of_a_done_task_counts_nothing_twice(
    worker: Worker, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_all_succeed"), FakeContext())
    metrics.samples.clear()

    worker.handle(event("sqs_redelivery"), FakeContext(aws_request_id="worker-req-2"))

    assert metrics.totals() == {"BatchSize": 1}
    assert metrics.flushes == 2  # once per invocation


class FinishedElsewhereStore(InMemoryTaskStore):
    """Another delivery of the same message finishes the task while this one runs it."""

    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> datetime | None:
        super().finish(task_id, {"by": "the other delivery"})
        return super().finish(task_id, result)


def test_a_task_finished_by_another_delivery_is_counted_once_by_that_one(
    metrics: InMemoryMetrics,
) -> None:
    store = FinishedElsewhereStore()
    accept_tasks_of(store, "sqs_redelivery")
    worker = new_worker(store, metrics)

    response = worker.handle(event("sqs_redelivery"), FakeContext())

    assert response == {"batchItemFailures": []}
    assert store.rows[ECHO_ID].result == {"by": "the other delivery"}
    assert metrics.totals() == {"BatchSize": 1}


# --- backoff, permanent failures and outages ----------------------------------------------------


def sqs_event(*records: tuple[str, int]) -> dict[str, Any]:
    """An SQS event of (body, receive count) records, shaped like the canonical ones."""
    template = event("sqs_all_succeed")["Records"][0]
    built = []
    for index, (body, receive_count) in enumerate(records, start=1):
        record = json.loads(json.dumps(template))
        record.update(messageId=f"m-{index}", receiptHandle=f"rh-{index}", body=body)
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        built.append(record)
    return {"Records": built}


def task_body(task_id: uuid.UUID, task_type: str, payload: dict[str, Any]) -> str:
    return json.dumps(
        {
            "task_id": str(task_id),
            "type": task_type,
            "payload": payload,
            "accepted_at": "2026-11-27T07:00:00+00:00",
            "idempotency_key": None,
        }
    )


def committed_task(store: InMemoryTaskStore, task_type: str, payload: dict[str, Any]) -> str:
    """A committed row, and the body of its message."""
    task_id = uuid.uuid4()
    body = task_body(task_id, task_type, payload)
    message = TaskMessage.parse(body, "req-abc")
    new = NewTask(task_id, task_type, payload, None, "req-abc", message.accepted_at)
    store.rows[task_id] = new.pending().committed()
    return body


def test_a_failed_record_comes_back_after_a_backoff_that_grows_with_its_receives(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    fail = committed_task(store, "fail", {})

    worker.handle(sqs_event((fail, 1), (fail, 2), (fail, 4)), FakeContext())

    # base 2 s x 2^(receive - 1): 2, 4, 16 s
    assert messages.delays == {"rh-1": 2, "rh-2": 4, "rh-3": 16}


def test_the_backoff_is_capped_and_the_last_receive_goes_to_the_dead_letter_queue_at_once(
    store: InMemoryTaskStore, metrics: InMemoryMetrics, messages: RecordedMessages
) -> None:
    worker = new_worker(store, metrics, messages, backoff=Backoff(base_s=10, max_s=30))
    fail = committed_task(store, "fail", {})

    worker.handle(sqs_event((fail, 3), (fail, 5)), FakeContext())

    assert messages.delays == {"rh-1": 30, "rh-2": 0}


def test_without_backoff_records_come_back_after_the_visibility_timeout(
    store: InMemoryTaskStore, metrics: InMemoryMetrics, messages: RecordedMessages
) -> None:
    worker = new_worker(store, metrics, messages, backoff=Backoff(base_s=0, max_s=30))
    fail = committed_task(store, "fail", {})

    response = worker.handle(sqs_event((fail, 1), (fail, 5)), FakeContext())

    assert len(response["batchItemFailures"]) == 2
    assert messages.delays == {}


def test_a_payload_its_type_refuses_fails_at_once_into_the_dead_letter_queue(
    worker: Worker,
    store: InMemoryTaskStore,
    metrics: InMemoryMetrics,
    messages: RecordedMessages,
) -> None:
    body = committed_task(store, "sleep", {"ms": "soon"})  # sent by other means than the API

    response = worker.handle(sqs_event((body, 1)), FakeContext())

    assert response == {"batchItemFailures": []}  # not retried: no retry can fix it
    [row] = [r for r in store.rows.values() if r.payload == {"ms": "soon"}]
    assert row.status == "failed" and row.error is not None and "payload.ms" in row.error
    assert messages.dead_letters == [(body, ANY)]
    assert "payload.ms" in messages.dead_letters[0][1]
    assert metrics.total("TasksFailed") == 1 and metrics.total("TasksRetried") == 0


def test_a_message_that_is_not_a_task_goes_to_the_dead_letter_queue_with_its_reason(
    worker: Worker, messages: RecordedMessages
) -> None:
    response = worker.handle(sqs_event(("{not json", 1)), FakeContext())

    assert response == {"batchItemFailures": []}
    assert messages.dead_letters == [("{not json", ANY)]
    assert "not a task message" in messages.dead_letters[0][1]


class CountingStore(InMemoryTaskStore):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> Any:
        self.attempts += 1
        return super().start_attempt(message, worker_request_id)


def test_a_database_outage_fails_the_batch_fast_with_one_log_line(
    metrics: InMemoryMetrics,
    messages: RecordedMessages,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CountingStore()
    bodies = [committed_task(store, "echo", {"n": n}) for n in range(4)]
    store.down = True
    worker = new_worker(store, metrics, messages)

    with caplog.at_level(logging.INFO, logger="chalicelib"):
        response = worker.handle(sqs_event(*[(b, 1) for b in bodies]), FakeContext())

    assert len(response["batchItemFailures"]) == 4
    assert store.attempts == 1  # the other three were not tried
    assert messages.delays == {"rh-1": 2, "rh-2": 2, "rh-3": 2, "rh-4": 2}
    outage_lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_lines) == 1 and "4 of 4 records" in outage_lines[0].getMessage()


def test_an_outage_on_the_last_receive_sends_the_task_again_instead_of_dead_lettering_it(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    body = committed_task(store, "echo", {"n": 1})
    store.down = True

    response = worker.handle(sqs_event((body, 5)), FakeContext())

    assert response == {"batchItemFailures": []}  # deleted: its copy carries on
    assert messages.requeued == [(body, 32)]  # base 2 x 2^4, under the 60 s cap
    assert messages.dead_letters == []


def test_a_task_its_request_has_not_committed_yet_comes_back_later(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    body = committed_task(store, "echo", {"n": 1})
    task_id = uuid.UUID(json.loads(body)["task_id"])
    store.rows[task_id] = replace(store.rows[task_id], status="pending")

    response = worker.handle(sqs_event((body, 1)), FakeContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert store.rows[task_id].status == "pending"
    assert messages.delays == {"rh-1": 2}


class CommittingWhileTheWorkerWaits(InMemoryTaskStore):
    """The API's commit lands while the worker looks again (its message arrived first)."""

    def __init__(self) -> None:
        super().__init__()
        self.uncommitted: uuid.UUID | None = None
        self.checks = 0

    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> Any:
        self.checks += 1
        if self.checks == 3 and self.uncommitted is not None:
            self.rows[self.uncommitted] = self.rows[self.uncommitted].committed()
        return super().start_attempt(message, worker_request_id)


def test_a_task_committed_just_after_its_message_arrived_runs_in_the_same_batch(
    metrics: InMemoryMetrics, messages: RecordedMessages
) -> None:
    store = CommittingWhileTheWorkerWaits()
    body = committed_task(store, "echo", {"n": 1})
    task_id = uuid.UUID(json.loads(body)["task_id"])
    store.rows[task_id] = replace(store.rows[task_id], status="pending")
    store.uncommitted = task_id
    pauses: list[float] = []
    worker = Worker(
        store,
        TaskRunner(sleep=lambda s: None),
        5,
        Logger(service="test"),
        metrics,
        messages,
        BACKOFF,
        wait=pauses.append,
    )

    response = worker.handle(sqs_event((body, 1)), FakeContext())

    assert response == {"batchItemFailures": []}
    assert store.rows[task_id].status == "done"
    assert len(pauses) == 2 and sum(pauses) < 1  # a moment, not a backoff


def test_a_message_whose_task_was_withdrawn_is_dropped(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    body = task_body(uuid.uuid4(), "echo", {"n": 1})  # no row: its request answered 503

    response = worker.handle(sqs_event((body, 1)), FakeContext())

    assert response == {"batchItemFailures": []}
    assert uuid.UUID(json.loads(body)["task_id"]) not in store.rows
    assert messages.dead_letters == [] and messages.requeued == []


def test_a_deferred_task_comes_back_at_once_and_is_never_failed_for_it(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    body = committed_task(store, "sleep", {"ms": 2000})

    response = worker.handle(
        sqs_event((body, 1), (body, 5)), FakeContext(remaining_ms=2500, at_start_ms=30_000)
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert messages.delays == {"rh-1": 0}
    assert messages.requeued == [(body, 0)]  # its last receive: a fresh copy, not a failure
    [row] = [r for r in store.rows.values() if r.payload == {"ms": 2000}]
    assert row.status == "retrying"


def test_a_failure_to_set_the_delays_leaves_the_visibility_timeout(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    fail = committed_task(store, "fail", {})
    messages.down = True

    response = worker.handle(sqs_event((fail, 1)), FakeContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def test_a_task_longer_than_a_whole_invocation_fails_for_good_instead_of_deferring_forever(
    worker: Worker, store: InMemoryTaskStore, messages: RecordedMessages
) -> None:
    body = committed_task(store, "sleep", {"ms": 4500})  # + 1 s of margin > a 5-s function

    response = worker.handle(sqs_event((body, 1)), FakeContext(remaining_ms=5000))

    assert response == {"batchItemFailures": []}
    [row] = [r for r in store.rows.values() if r.payload == {"ms": 4500}]
    assert row.status == "failed" and row.error is not None and "raise its timeout" in row.error
    assert [reason for _, reason in messages.dead_letters] == [row.error]
