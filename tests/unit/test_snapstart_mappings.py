"""The worker's SQS mapping across redeploys once SnapStart has put it on the alias: Chalice
takes a mapping for its own only while it invokes the unqualified function, so the deploy hands
it back first and deletes any second mapping of the same queue to the function (moto)."""

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployment import snapstart
from tests.lambda_zip import zip_of

REGION = "us-east-1"
FUNCTION = "serverless-scaling-local-worker"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="worker",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lambda_client = boto3.client("lambda", region_name=REGION)
        function_arn = lambda_client.create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": zip_of("def handler(event, context):\n    return None\n")},
        )["FunctionArn"]
        version = lambda_client.publish_version(FunctionName=FUNCTION)["Version"]
        alias_arn = lambda_client.create_alias(
            FunctionName=FUNCTION, Name=snapstart.ALIAS, FunctionVersion=version
        )["AliasArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queues = {
            name: sqs.get_queue_attributes(
                QueueUrl=sqs.create_queue(QueueName=name)["QueueUrl"],
                AttributeNames=["QueueArn"],
            )["Attributes"]["QueueArn"]
            for name in ("tasks", "other")
        }
        yield {
            "lambda": lambda_client,
            "function_arn": function_arn,
            "alias_arn": alias_arn,
            "queues": queues,
        }


def _mapping(aws: dict[str, Any], queue: str, function_arn: str) -> str:
    uuid: str = aws["lambda"].create_event_source_mapping(
        EventSourceArn=aws["queues"][queue], FunctionName=function_arn, BatchSize=10
    )["UUID"]
    return uuid


def _record(aws: dict[str, Any], uuid: str) -> dict[str, Any]:
    """What Chalice writes to .chalice/deployed/STAGE.json for the worker's SQS subscription."""
    return {
        "resources": [
            {"name": "worker", "resource_type": "lambda_function"},
            {
                "name": "worker-sqs-event-source",
                "resource_type": "sqs_event",
                "queue_arn": aws["queues"]["tasks"],
                "event_uuid": uuid,
                "queue": "tasks",
                "lambda_arn": aws["function_arn"],
            },
        ]
    }


def test_before_chalice_deploys_the_mapping_invokes_the_function_chalice_recorded(
    aws: dict[str, Any],
) -> None:
    uuid = _mapping(aws, "tasks", aws["alias_arn"])

    snapstart.hand_back_mappings(aws["lambda"], _record(aws, uuid))

    mapping = aws["lambda"].get_event_source_mapping(UUID=uuid)
    assert mapping["FunctionArn"] == aws["function_arn"]


def test_a_recorded_mapping_that_is_gone_is_left_for_chalice_to_make(
    aws: dict[str, Any],
) -> None:
    uuid = _mapping(aws, "tasks", aws["alias_arn"])
    aws["lambda"].delete_event_source_mapping(UUID=uuid)

    snapstart.hand_back_mappings(aws["lambda"], _record(aws, uuid))  # no error

    assert aws["lambda"].list_event_source_mappings()["EventSourceMappings"] == []


def test_a_second_mapping_of_the_queue_to_the_function_is_deleted_and_no_other(
    aws: dict[str, Any],
) -> None:
    stray_on_alias = _mapping(aws, "tasks", aws["alias_arn"])
    kept = _mapping(aws, "tasks", aws["function_arn"])
    other_queue = _mapping(aws, "other", aws["alias_arn"])

    deleted = snapstart.remove_stray_mappings(aws["lambda"], kept)

    assert deleted == [stray_on_alias]
    left = {m["UUID"] for m in aws["lambda"].list_event_source_mappings()["EventSourceMappings"]}
    assert left == {kept, other_queue}


def test_unqualified_drops_only_a_version_or_alias() -> None:
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION}"
    assert snapstart.unqualified(arn + ":live") == arn
    assert snapstart.unqualified(arn + ":7") == arn
    assert snapstart.unqualified(arn) == arn
