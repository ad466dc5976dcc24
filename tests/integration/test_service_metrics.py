"""AWS/Lambda and AWS/SQS service metrics, published by the local cloud every second and read
back with GetMetricData at Period=1."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localcloud import procs
from tests.metrics import metric_values

PUBLISH_TIMEOUT_S = 15.0

HANDLER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise RuntimeError("requested failure")
    return {"ok": True}
"""


@pytest.fixture
def function_name(create_function: Callable[..., str]) -> str:
    return create_function(HANDLER, prefix="metrics")


@pytest.fixture(scope="module")
def cloudwatch(aws: Callable[[str], Any]) -> Any:
    return aws("cloudwatch")


@pytest.fixture
def started() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)


def eventually(read: Callable[[], Any], check: Callable[[Any], bool]) -> Any:
    """Poll `read` until `check` accepts its value (publishing runs once a second); return it,
    or fail showing the last value read."""
    last: list[Any] = [None]

    def met() -> bool:
        last[0] = read()
        return check(last[0])

    assert procs.poll(met, PUBLISH_TIMEOUT_S, 0.25), f"last value read: {last[0]}"
    return last[0]


# --- SQS --------------------------------------------------------------------------------------


def test_sqs_metrics_count_sends_and_deletes_and_sample_depth_and_age(
    aws: Callable[[str], Any],
    cloudwatch: Any,
    create_queue: Callable[[str], str],
    started: datetime,
) -> None:
    sqs = aws("sqs")
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    url = create_queue(name)
    # a queue whose name extends ours: its metrics must not be read as ours
    other = create_queue(f"{name}-dlq")
    queue = ("QueueName", name)

    def read(metric: str, stat: str) -> list[float]:
        return metric_values(cloudwatch, started, "AWS/SQS", metric, queue, stat)

    # WHEN 8 messages are sent (3 single, one batch of 5) and 1 to the other queue
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"single {i}")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"batch {i}"} for i in range(5)]
    )
    sqs.send_message(QueueUrl=other, MessageBody="elsewhere")

    # THEN they are counted exactly, and the depth reaches 8
    eventually(lambda: sum(read("NumberOfMessagesSent", "Sum")), lambda total: total == 8)
    eventually(lambda: read("ApproximateNumberOfMessagesVisible", "Maximum"), lambda v: 8 in v)
    other_sent = metric_values(
        cloudwatch, started, "AWS/SQS", "NumberOfMessagesSent", ("QueueName", f"{name}-dlq"), "Sum"
    )
    assert sum(other_sent) == 1

    # WHEN all 8 are received, 1 deleted alone and 5 in a batch (plus one stale handle)
    received: list[dict[str, Any]] = []
    while len(received) < 8:
        received += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
        ).get("Messages", [])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
    entries = [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received[1:6])
    ]
    result = sqs.delete_message_batch(
        QueueUrl=url, Entries=[*entries, {"Id": "stale", "ReceiptHandle": "not-a-handle"}]
    )
    assert len(result["Successful"]) == 5 and len(result["Failed"]) == 1

    # THEN exactly the 6 successful deletes count; 2 stay in flight, none visible, and the
    # oldest of them is a second old or more
    eventually(lambda: sum(read("NumberOfMessagesDeleted", "Sum")), lambda total: total == 6)
    eventually(
        lambda: read("ApproximateNumberOfMessagesNotVisible", "Maximum"),
        lambda v: bool(v) and v[-1] == 2,
    )
    assert read("ApproximateNumberOfMessagesVisible", "Maximum")[-1] == 0
    eventually(lambda: read("ApproximateAgeOfOldestMessage", "Maximum"), lambda v: max(v) >= 1)


# --- Lambda -------------------------------------------------------------------------------------


def invoke(client: Any, name: str, event: dict[str, Any]) -> str:
    """'ok', 'error' (a function error) or 'throttled'."""
    try:
        response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    except client.exceptions.TooManyRequestsException:
        return "throttled"
    response["Payload"].read()
    return "error" if response.get("FunctionError") else "ok"


def invoke_together(client: Any, name: str, events: list[dict[str, Any]]) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(len(events)) as pool:
        return list(pool.map(lambda event: invoke(client, name, event), events))


def test_lambda_metrics_count_invocations_errors_duration_and_peak_concurrency(
    aws: Callable[[str], Any], cloudwatch: Any, function_name: str, started: datetime
) -> None:
    client = aws("lambda")

    def read(metric: str, stat: str) -> list[float]:
        return metric_values(
            cloudwatch, started, "AWS/Lambda", metric, ("FunctionName", function_name), stat
        )

    # WHEN it runs 3 times, fails once, then runs 4 times at once, each for 2 s
    outcomes = [invoke(client, function_name, {}) for _ in range(3)]
    outcomes.append(invoke(client, function_name, {"fail": True}))
    outcomes += invoke_together(client, function_name, [{"sleep": 2}] * 4)
    assert outcomes == ["ok"] * 3 + ["error"] + ["ok"] * 4

    # THEN
    eventually(lambda: sum(read("Invocations", "Sum")), lambda total: total == 8)
    assert sum(read("Errors", "Sum")) == 1
    assert sum(read("Throttles", "Sum")) == 0
    assert sum(read("Duration", "SampleCount")) == 8
    assert max(read("Duration", "Maximum")) >= 2000
    assert min(read("Duration", "Minimum")) < 1000
    # the 4 overlapping invocations, then back to 0
    concurrency = eventually(
        lambda: read("ConcurrentExecutions", "Maximum"), lambda v: bool(v) and v[-1] == 0
    )
    assert max(concurrency) == 4, concurrency


def test_lambda_throttles_count_what_reserved_concurrency_refused(
    aws: Callable[[str], Any], cloudwatch: Any, function_name: str, started: datetime
) -> None:
    client = aws("lambda")
    client.put_function_concurrency(FunctionName=function_name, ReservedConcurrentExecutions=2)

    def read(metric: str, stat: str) -> list[float]:
        return metric_values(
            cloudwatch, started, "AWS/Lambda", metric, ("FunctionName", function_name), stat
        )

    # WHEN 5 slow invokes arrive together where 2 may run
    outcomes = invoke_together(client, function_name, [{"sleep": 2}] * 5)
    ran, throttled = outcomes.count("ok"), outcomes.count("throttled")
    assert ran + throttled == 5 and throttled >= 1, outcomes

    # THEN every refusal is a Throttle, not an Invocation, and concurrency never exceeds 2
    eventually(lambda: sum(read("Throttles", "Sum")), lambda total: total == throttled)
    eventually(lambda: sum(read("Invocations", "Sum")), lambda total: total == ran)
    assert sum(read("Errors", "Sum")) == 0
    concurrency = eventually(
        lambda: read("ConcurrentExecutions", "Maximum"), lambda v: bool(v) and v[-1] == 0
    )
    assert max(concurrency) == 2, concurrency


def test_metrics_carry_one_second_timestamps(
    aws: Callable[[str], Any], cloudwatch: Any, create_queue: Callable[[str], str]
) -> None:
    sqs = aws("sqs")
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    url = create_queue(name)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)

    sqs.send_message(QueueUrl=url, MessageBody="one")
    time.sleep(1.1)  # the second datum must fall into another second than the first
    sqs.send_message(QueueUrl=url, MessageBody="two")

    def timestamps() -> list[datetime]:
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SQS",
                            "MetricName": "NumberOfMessagesSent",
                            "Dimensions": [{"Name": "QueueName", "Value": name}],
                        },
                        "Period": 1,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=since,
            EndTime=datetime.now(UTC) + timedelta(seconds=2),
            ScanBy="TimestampAscending",
        )
        found: list[datetime] = answer["MetricDataResults"][0]["Timestamps"]
        return found

    found = eventually(timestamps, lambda ts: len(ts) == 2)
    assert all(t.microsecond == 0 for t in found)
    assert (found[1] - found[0]).total_seconds() >= 1
