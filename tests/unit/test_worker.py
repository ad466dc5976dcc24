"""The SQS worker, fed canonical SQS events (tests/events/): partial batch responses, retries
to the dead-letter queue, and redeliveries that change nothing."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from aws_lambda_powertools import Logger

from chalicelib.task_types import TaskRunner
from chalicelib.worker import Worker
from tests.fakes import InMemoryMetrics, InMemoryTaskStore

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

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


@pytest.fixture
def worker(store: InMemoryTaskStore, metrics: InMemoryMetrics) -> Worker:
    return Worker(store, TaskRunner(sleep=lambda s: None), 5, Logger(service="test"), metrics)


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

    assert response == {
        "batchItemFailures": [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]
    }
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
    worker = Worker(store, TaskRunner(), 5, log, InMemoryMetrics())

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
    response = worker.handle(event("sqs_all_succeed"), FakeContext(remaining_ms=900))

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


def test_failed_and_malformed_records_with_receives_left_count_as_retried(
    worker: Worker, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_partial_failure"), FakeContext())

    # msg-1 done; msg-2 failed on receive 2 of 5 and msg-3 is not a task: both go back.
    assert metrics.totals() == {
        "BatchSize": 3,
        "TasksProcessed": 1,
        "EndToEndLatency": ANY,
        "TasksRetried": 2,
    }


def test_a_failure_on_the_last_receive_counts_as_failed_not_retried(
    worker: Worker, metrics: InMemoryMetrics
) -> None:
    worker.handle(event("sqs_last_receive_failure"), FakeContext())

    assert metrics.totals() == {"BatchSize": 1, "TasksFailed": 1}
    assert metrics.flushes == 1


def test_deferred_tasks_count_as_retried(worker: Worker, metrics: InMemoryMetrics) -> None:
    worker.handle(event("sqs_all_succeed"), FakeContext(remaining_ms=900))

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
    worker = Worker(store, TaskRunner(), 5, Logger(service="test"), metrics)

    response = worker.handle(event("sqs_redelivery"), FakeContext())

    assert response == {"batchItemFailures": []}
    assert store.rows[ECHO_ID].result == {"by": "the other delivery"}
    assert metrics.totals() == {"BatchSize": 1}
