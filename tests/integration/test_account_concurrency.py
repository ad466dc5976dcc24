"""The account's concurrency is shared by every function, as on AWS: a mapping with
MaximumConcurrency unset, draining a backlog of slow messages on function A, takes all the
room, and a synchronous invoke of function B is throttled (429 TooManyRequestsException);
reserved concurrency on B protects it.

Runs on a LocalStack of its own started with LOCALCLOUD_ACCOUNT_CONCURRENCY=20 (and a fast
scale-up rate, so the mapping reaches 20 in seconds): at the default 1,000 the test would need
1,000 execution environments. No PostgreSQL, no app: two stdlib test functions."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import control, localstack
from localcloud.settings import Settings
from tests.lambda_zip import zip_of
from tests.polling import wait_for

ACCOUNT_CONCURRENCY = 20
SCALE_UP_PER_MINUTE = 6000.0  # 100 a second: past 20 within a second of the backlog
BACKLOG = 80  # batches of one message, each SLOW_SECONDS: about 40 s of a full account
SLOW_SECONDS = 10
RESERVED_FOR_B = 3
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
WAIT_SECONDS = 60.0

SLOW = """
import time

def handler(event, context):
    for record in event["Records"]:
        time.sleep(float(record["body"]))
    return {}
"""
QUICK = """
def handler(event, context):
    return {"ok": True}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def low_limit_cloud() -> Iterator[Callable[[str], Any]]:
    """LocalStack alone (the extension loaded) with a 20-execution account, on free ports and a
    state dir of its own, the venvs of the normal local cloud; stopped with its functions."""
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="account-limit-") as state:
        cfg = replace(
            base,
            state_dir=Path(state),
            port=free_port(),
            pg_port=free_port(),
            account_concurrency=ACCOUNT_CONCURRENCY,
            esm_scale_up_per_minute=SCALE_UP_PER_MINUTE,
        )
        record = localstack.start(cfg)
        try:
            localstack.wait_healthy(cfg, record)
            config = Config(read_timeout=120, retries={"max_attempts": 0})
            yield lambda service: boto3.client(
                service,
                endpoint_url=cfg.localstack_url,
                region_name=cfg.region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=config,
            )
        finally:
            localstack.stop(cfg, record)
            control.stop_functions(cfg)


def create_function(lambda_client: Any, name: str, source: str) -> None:
    lambda_client.create_function(
        FunctionName=name,
        Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": zip_of(source)},
        Timeout=30,
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)


def invoke_outcome(lambda_client: Any, name: str) -> tuple[int, str]:
    """(HTTP status, error code or "") of one RequestResponse invoke."""
    try:
        response = lambda_client.invoke(FunctionName=name, InvocationType="RequestResponse")
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]
    return response["StatusCode"], response.get("FunctionError", "")


def test_a_mapping_that_takes_the_account_s_room_throttles_another_function_unless_reserved(
    low_limit_cloud: Callable[[str], Any],
) -> None:
    lambda_client, sqs = low_limit_cloud("lambda"), low_limit_cloud("sqs")
    # GIVEN function A, fed by a mapping with MaximumConcurrency unset, and function B
    create_function(lambda_client, "slow-a", SLOW)
    create_function(lambda_client, "quick-b", QUICK)
    assert invoke_outcome(lambda_client, "quick-b") == (200, "")  # B runs while there is room
    limits = lambda_client.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == ACCOUNT_CONCURRENCY
    url = sqs.create_queue(QueueName="backlog", Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
    for _ in range(BACKLOG // 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(n), "MessageBody": str(SLOW_SECONDS)} for n in range(10)],
        )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # WHEN the mapping drains the backlog of slow messages
    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="slow-a", BatchSize=1
    )["UUID"]
    try:
        # THEN A takes the account's room, and B's synchronous invoke is throttled
        throttled = wait_for(
            lambda: invoke_outcome(lambda_client, "quick-b"),
            lambda outcome: outcome[0] != 200,
            WAIT_SECONDS,
            "an invoke of B throttled while A's batches fill the account",
        )
        assert throttled == (429, "TooManyRequestsException")

        # WHEN B has reserved concurrency
        lambda_client.put_function_concurrency(
            FunctionName="quick-b", ReservedConcurrentExecutions=RESERVED_FOR_B
        )
        # THEN B runs although A's backlog still fills the rest of the account
        assert invoke_outcome(lambda_client, "quick-b") == (200, "")
        assert json.loads(lambda_client.invoke(FunctionName="quick-b")["Payload"].read()) == {
            "ok": True
        }
    finally:
        lambda_client.delete_event_source_mapping(UUID=mapping)
        sqs.purge_queue(QueueUrl=url)
