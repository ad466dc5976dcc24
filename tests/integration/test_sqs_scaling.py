"""The scaling SQS poller on a queue and a function of the test's own (no app): it runs up to
MaximumConcurrency batches at once and no more, partial batch responses delete only what
succeeded, a deleted mapping polls no more, and disabling an idle mapping ends its long poll."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from localcloud_ext.batch_threads import LONG_POLL_SECONDS
from tests.metrics import metric_values
from tests.polling import wait_for

# Each record: sleep its "sleep" seconds; a record whose body says "fail" is reported failed.
HANDLER = """
import json
import time

def handler(event, context):
    failed = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        time.sleep(body.get("sleep", 0))
        if body.get("fail"):
            failed.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failed}
"""
WAIT_SECONDS = 60.0


def depth(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def send(sqs: Any, url: str, bodies: list[dict[str, Any]]) -> None:
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "MessageBody": json.dumps(body)}
                for n, body in enumerate(bodies[start : start + 10])
            ],
        )


def map_queue(aws: Callable[[str], Any], url: str, function: str, **settings: Any) -> str:
    lambda_client = aws("lambda")
    arn = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    uuid: str = lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, **settings
    )["UUID"]
    wait_for(
        lambda: lambda_client.get_event_source_mapping(UUID=uuid)["State"],
        lambda state: state == "Enabled",
        WAIT_SECONDS,
        "the mapping Enabled",
    )
    return uuid


def concurrent_executions(aws: Callable[[str], Any], function: str, since: datetime) -> float:
    values = metric_values(
        aws("cloudwatch"),
        since,
        "AWS/Lambda",
        "ConcurrentExecutions",
        ("FunctionName", function),
        "Maximum",
    )
    return max(values, default=0.0)


def test_at_most_maximum_concurrency_batches_run_at_once_and_that_many_do(
    aws: Callable[[str], Any],
    create_queue: Callable[..., str],
    create_function: Callable[..., str],
) -> None:
    sqs, since = aws("sqs"), datetime.now(UTC) - timedelta(seconds=1)
    url = create_queue(f"scaling-{int(time.time() * 1000)}", VisibilityTimeout="60")
    function = create_function(HANDLER, prefix="scaling")
    send(sqs, url, [{"sleep": 0.5}] * 24)  # 24 batches of one, 0.5 s each

    mapping = map_queue(aws, url, function, BatchSize=1, ScalingConfig={"MaximumConcurrency": 3})
    try:
        wait_for(lambda: depth(sqs, url), lambda d: d == (0, 0), WAIT_SECONDS, "the queue drained")
    finally:
        aws("lambda").delete_event_source_mapping(UUID=mapping)

    peak = wait_for(
        lambda: concurrent_executions(aws, function, since),
        lambda value: value >= 3,
        WAIT_SECONDS,
        "ConcurrentExecutions in CloudWatch",
    )
    assert peak == 3


def test_partial_batch_responses_delete_only_the_records_that_succeeded(
    aws: Callable[[str], Any],
    create_queue: Callable[..., str],
    create_function: Callable[..., str],
) -> None:
    sqs = aws("sqs")
    url = create_queue(f"partial-{int(time.time() * 1000)}", VisibilityTimeout="60")
    function = create_function(HANDLER, prefix="partial")
    send(sqs, url, [{"n": n, "fail": n == 2} for n in range(5)])

    mapping = map_queue(
        aws,
        url,
        function,
        BatchSize=5,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    try:
        # the four that succeeded are deleted; the failed one waits out its visibility timeout
        wait_for(
            lambda: depth(sqs, url), lambda d: d == (0, 1), WAIT_SECONDS, "one message in flight"
        )
    finally:
        aws("lambda").delete_event_source_mapping(UUID=mapping)


def test_a_deleted_mapping_polls_no_more(
    aws: Callable[[str], Any],
    create_queue: Callable[..., str],
    create_function: Callable[..., str],
) -> None:
    sqs, lambda_client = aws("sqs"), aws("lambda")
    url = create_queue(f"deleted-{int(time.time() * 1000)}", VisibilityTimeout="60")
    function = create_function(HANDLER, prefix="deleted")
    mapping = map_queue(aws, url, function, BatchSize=1)
    send(sqs, url, [{"n": 1}])
    wait_for(
        lambda: depth(sqs, url), lambda d: d == (0, 0), WAIT_SECONDS, "the first message processed"
    )

    lambda_client.delete_event_source_mapping(UUID=mapping)
    wait_for(
        lambda: [
            m["UUID"] for m in lambda_client.list_event_source_mappings()["EventSourceMappings"]
        ],
        lambda uuids: mapping not in uuids,
        WAIT_SECONDS,
        "the mapping gone",
    )
    send(sqs, url, [{"n": 2}, {"n": 3}])
    time.sleep(2.0)  # a window in which a poller still running would take them

    assert depth(sqs, url) == (2, 0)


def test_disabling_an_idle_mapping_ends_its_long_poll_and_leaves_new_messages_queued(
    aws: Callable[[str], Any],
    create_queue: Callable[..., str],
    create_function: Callable[..., str],
) -> None:
    sqs, lambda_client = aws("sqs"), aws("lambda")
    url = create_queue(f"disabled-{int(time.time() * 1000)}", VisibilityTimeout="60")
    function = create_function(HANDLER, prefix="disabled")
    mapping = map_queue(aws, url, function, BatchSize=1)
    try:
        send(sqs, url, [{"n": 1}])
        wait_for(lambda: depth(sqs, url), lambda d: d == (0, 0), WAIT_SECONDS, "picked up")
        # idle now: its one thread waits on the queue (up to LONG_POLL_SECONDS, 20 s)
        lambda_client.update_event_source_mapping(UUID=mapping, Enabled=False)
        wait_for(
            lambda: lambda_client.get_event_source_mapping(UUID=mapping)["State"],
            lambda state: state == "Disabled",
            LONG_POLL_SECONDS / 2,  # a wait that only its timeout ended would take 20 s
            "the mapping Disabled, its wait cut short",
        )
        send(sqs, url, [{"n": 2}])
        time.sleep(2.0)  # a window in which a thread still waiting would take it
        assert depth(sqs, url) == (1, 0)
    finally:
        lambda_client.delete_event_source_mapping(UUID=mapping)
