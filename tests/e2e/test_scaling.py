"""The worker's SQS mapping scales like AWS's: N batches at once with MaximumConcurrency N and
never more, throttles from a smaller reserved concurrency lose nothing, a disabled mapping
stops polling. Seen where a user would see it: in the rows the batches wrote (each row carries
its invocation's request id and its start and finish times)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from burst.analysis import TaskRow, batch_intervals, peak_overlap
from localcloud.settings import Settings
from tests.e2e.conftest import Stage, deployed_stage
from tests.metrics import metric_values
from tests.polling import wait_for

# Throttled batches are retried until the visibility timeout runs short, so leave room for it.
WORKER_TIMEOUT_SECONDS = 10
VISIBILITY_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def scaling_stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path_factory.mktemp("scaling"),
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
    ) as deployed:
        yield deployed


def post_sleep_tasks(stage: Stage, count: int, ms: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    ids: list[str] = []
    for start in range(0, count, 100):
        tasks = [
            {"type": "sleep", "payload": {"ms": ms}, "idempotency_key": f"scale-{run}-{n}"}
            for n in range(start, min(count, start + 100))
        ]
        response = stage.post("tasks/batch", {"tasks": tasks})
        assert response.status_code == 202, response.text
        ids += [result["id"] for result in response.json()["results"]]
    assert len(ids) == count
    return ids


def finished_rows(conninfo: str, ids: list[str], seconds: float) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        with psycopg.connect(conninfo, row_factory=psycopg.rows.dict_row) as connection:
            return connection.execute(
                "SELECT * FROM tasks WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchall()

    rows: list[dict[str, Any]] = wait_for(
        fetch,
        lambda rows: len(rows) == len(ids) and all(r["status"] == "done" for r in rows),
        seconds,
        f"{len(ids)} done rows",
    )
    return rows


def cloudwatch_values(
    stage: Stage,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    stat: str,
    since: datetime | None = None,
) -> list[float]:
    [dimension] = dimensions.items()
    since = since or datetime.now(UTC) - timedelta(minutes=2)
    return metric_values(stage.client("cloudwatch"), since, namespace, metric, dimension, stat)


def test_maximum_concurrency_n_runs_n_batches_at_once_and_never_more(
    scaling_stage: Stage, database_conninfo: str
) -> None:
    maximum = 3
    # The backlog waits while the mapping is off, so batches of the previous settings take none.
    scaling_stage.update_mapping(Enabled=False)
    ids = post_sleep_tasks(scaling_stage, 36, ms=300)  # 18 batches of 0.6 s, 3 at a time
    scaling_stage.update_mapping(
        Enabled=True, BatchSize=2, ScalingConfig={"MaximumConcurrency": maximum}
    )
    rows = finished_rows(database_conninfo, ids, 90)

    batches = batch_intervals(TaskRow.from_db(row) for row in rows)
    assert len(batches) >= 18
    peak = peak_overlap(batches.values()).count
    assert peak == maximum, f"{peak} batches at once with MaximumConcurrency {maximum}"
    assert all(row["attempts"] == 1 for row in rows)  # no message ran in two batches
    # the mapping's own gauge, published by the local cloud once a second
    gauge = wait_for(
        lambda: cloudwatch_values(
            scaling_stage,
            "LocalCloud/EventSourceMapping",
            "ConcurrentBatches",
            {"EventSourceMappingUUID": scaling_stage.mapping_uuid},
            "Maximum",
        ),
        lambda values: maximum in values,
        10,
        f"ConcurrentBatches {maximum} in CloudWatch",
    )
    assert max(gauge) == maximum


def test_reserved_concurrency_below_the_maximum_throttles_and_loses_nothing(
    scaling_stage: Stage, database_conninfo: str
) -> None:
    function = scaling_stage.worker_function
    lambda_client = scaling_stage.client("lambda")
    scaling_stage.update_mapping(Enabled=False)
    since = datetime.now(UTC).replace(microsecond=0)
    lambda_client.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=2)
    try:
        ids = post_sleep_tasks(scaling_stage, 40, ms=200)
        scaling_stage.update_mapping(
            Enabled=True, BatchSize=2, ScalingConfig={"MaximumConcurrency": 6}
        )
        rows = finished_rows(database_conninfo, ids, 120)
    finally:
        lambda_client.delete_function_concurrency(FunctionName=function)

    assert len({row["id"] for row in rows}) == 40
    batches = batch_intervals(TaskRow.from_db(row) for row in rows)
    assert peak_overlap(batches.values()).count <= 2
    dead_letters = scaling_stage.client("sqs").get_queue_attributes(
        QueueUrl=scaling_stage.dead_letter_queue_url,
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert dead_letters == "0"
    throttles = wait_for(
        lambda: sum(
            cloudwatch_values(
                scaling_stage, "AWS/Lambda", "Throttles", {"FunctionName": function}, "Sum", since
            )
        ),
        lambda total: total > 0,
        10,
        "throttles in CloudWatch",
    )
    assert throttles > 0


def test_a_disabled_mapping_stops_polling_and_picks_up_again_when_enabled(
    scaling_stage: Stage, database_conninfo: str
) -> None:
    scaling_stage.update_mapping(Enabled=False)
    try:
        ids = post_sleep_tasks(scaling_stage, 5, ms=10)
        time.sleep(2.0)  # a window in which a running poller would have taken them
        visible = scaling_stage.client("sqs").get_queue_attributes(
            QueueUrl=scaling_stage.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        assert visible == "5"
        with psycopg.connect(database_conninfo) as connection:
            statuses = connection.execute(
                "SELECT DISTINCT status FROM tasks WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchall()
        assert statuses == [("queued",)]
    finally:
        scaling_stage.update_mapping(Enabled=True)

    finished_rows(database_conninfo, ids, 60)
