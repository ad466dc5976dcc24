"""The app's stack: the template deployed by moto's CloudFormation, and deploy_stack's decisions.

moto creates the queues and the bucket (without its website configuration) but skips
AWS::CloudWatch::Alarm, and it never fails or rolls back a stack: botocore's Stubber plays
CloudFormation for those paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from deployment import stack
from deployment.stack import StackError

# moto warns that it skips the alarms; that is known (see the docstring), not news.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS.+CloudWatch.+Alarm:UserWarning")

REGION = "us-east-1"
NAME = stack.stack_name("unit")
TEMPLATE = stack.TEMPLATE_PATH.read_text()
PARAMETERS = {
    "Stage": "unit",
    "VisibilityTimeoutSeconds": "180",
    "DatabaseHost": "127.0.0.1",
    "DatabasePort": "5432",
    "DatabaseName": "app",
    "AppDatabaseRole": "serverless_scaling_unit_app",
}
OUTPUTS = {
    "Stage",
    "TaskQueueUrl",
    "TaskQueueArn",
    "TaskQueueName",
    "DeadLetterQueueUrl",
    "DeadLetterQueueArn",
    "DeadLetterQueueName",
    "MaxReceiveCount",
    "VisibilityTimeoutSeconds",
    "DashboardBucketName",
    "DashboardWebsiteUrl",
    "DatabaseSecretId",
    "AppDatabaseRole",
}


def aws_client(service: str) -> Any:
    return boto3.client(
        service, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture
def cloudformation() -> Iterator[Any]:
    with mock_aws():
        yield aws_client("cloudformation")


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call made through `client` from now on."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.cloudformation.{operation}",
        lambda params, **_: calls.append(params),
    )
    return calls


def test_the_template_creates_the_queues_with_redrive_and_visibility(cloudformation: Any) -> None:
    outputs = stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    # moto's CloudFormation skips AWS::SecretsManager::Secret, and so the output naming it: the
    # generated secret is checked against the local cloud (tests/e2e/test_security.py).
    assert set(outputs) == OUTPUTS - {"DatabaseSecretId"}
    assert outputs["TaskQueueName"] == "serverless-scaling-unit-tasks"
    assert outputs["DeadLetterQueueName"] == "serverless-scaling-unit-tasks-dlq"
    sqs = aws_client("sqs")
    tasks = sqs.get_queue_attributes(QueueUrl=outputs["TaskQueueUrl"], AttributeNames=["All"])
    attributes = tasks["Attributes"]
    assert attributes["VisibilityTimeout"] == "180"
    assert attributes["MessageRetentionPeriod"] == "345600"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": outputs["DeadLetterQueueArn"],
        "maxReceiveCount": 5,
    }
    dlq = sqs.get_queue_attributes(
        QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["MessageRetentionPeriod"]
    )
    assert dlq["Attributes"]["MessageRetentionPeriod"] == "1209600"
    # moto's bucket ignores WebsiteConfiguration: the website itself is checked on LocalStack.
    aws_client("s3").head_bucket(Bucket=outputs["DashboardBucketName"])
    assert outputs["DashboardWebsiteUrl"].startswith(f"http://{outputs['DashboardBucketName']}.")


def test_deploying_the_same_inputs_again_changes_nothing(cloudformation: Any) -> None:
    first = stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)
    creates = record_calls(cloudformation, "CreateStack")
    updates = record_calls(cloudformation, "UpdateStack")

    second = stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    assert second == first
    assert creates == [] and updates == []


def test_a_changed_parameter_updates_the_stack(cloudformation: Any) -> None:
    stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)
    updates = record_calls(cloudformation, "UpdateStack")

    outputs = stack.deploy_stack(
        cloudformation, NAME, TEMPLATE, {**PARAMETERS, "VisibilityTimeoutSeconds": "240"}
    )

    assert len(updates) == 1
    assert outputs["VisibilityTimeoutSeconds"] == "240"
    attributes = aws_client("sqs").get_queue_attributes(
        QueueUrl=outputs["TaskQueueUrl"], AttributeNames=["VisibilityTimeout"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "240"


def test_a_parameter_left_out_is_compared_with_its_default(cloudformation: Any) -> None:
    stack.deploy_stack(cloudformation, NAME, TEMPLATE, {**PARAMETERS, "MaxReceiveCount": "5"})
    updates = record_calls(cloudformation, "UpdateStack")

    stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)  # default: 5
    stack.deploy_stack(cloudformation, NAME, TEMPLATE, {**PARAMETERS, "MaxReceiveCount": "3"})

    assert len(updates) == 1
    assert {"ParameterKey": "MaxReceiveCount", "ParameterValue": "3"} in updates[0]["Parameters"]


def test_delete_is_idempotent(cloudformation: Any) -> None:
    outputs = stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    stack.delete_stack(cloudformation, NAME, poll_seconds=0)
    stack.delete_stack(cloudformation, NAME, poll_seconds=0)

    with pytest.raises(StackError, match="does not exist"):
        stack.stack_outputs(cloudformation, NAME)
    assert outputs["TaskQueueUrl"] not in aws_client("sqs").list_queues().get("QueueUrls", [])


def test_a_rejected_parameter_raises_stack_error_naming_it(cloudformation: Any) -> None:
    without_role = {k: v for k, v in PARAMETERS.items() if k != "AppDatabaseRole"}

    with pytest.raises(StackError, match="AppDatabaseRole") as raised:
        stack.deploy_stack(cloudformation, NAME, TEMPLATE, without_role, poll_seconds=0)

    assert isinstance(raised.value.__cause__, ClientError)


def test_stack_outputs_reads_the_deployed_outputs(cloudformation: Any) -> None:
    deployed = stack.deploy_stack(cloudformation, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    assert stack.stack_outputs(cloudformation, NAME) == deployed


# --- paths moto cannot take: CloudFormation played by botocore's Stubber ----------------------

MISSING = {"service_error_code": "ValidationError", "service_message": f"Stack {NAME} not found"}
STACK_ID = f"arn:aws:cloudformation:{REGION}:000000000000:stack/{NAME}/1"


def described(status: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    found = {
        "StackName": NAME,
        "StackId": STACK_ID,
        "StackStatus": status,
        "CreationTime": "2026-01-01T00:00:00Z",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
    }
    return {"Stacks": [found]}


def event(logical_id: str, resource_type: str, status: str, reason: str = "") -> dict[str, Any]:
    return {
        "StackId": STACK_ID,
        "EventId": f"{logical_id}-{status}",
        "StackName": NAME,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
        "Timestamp": "2026-01-01T00:00:00Z",
    }


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = aws_client("cloudformation")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_failed_create_raises_with_the_resources_reasons(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("describe_stacks", **MISSING)
    stubber.add_response("create_stack", {"StackId": STACK_ID})
    stubber.add_response("describe_stacks", described("CREATE_IN_PROGRESS"))
    stubber.add_response("describe_stacks", described("ROLLBACK_COMPLETE"))
    queue = "AWS::SQS::Queue"
    events = [  # newest first, as CloudFormation lists them
        event(NAME, "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE"),
        event("TaskQueue", queue, "DELETE_COMPLETE"),
        event("TaskQueue", queue, "CREATE_FAILED", "Invalid value for VisibilityTimeout"),
        event("DeadLetterQueue", queue, "CREATE_FAILED", "Resource creation cancelled"),
        event(NAME, "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", "User Initiated"),
        event("Old", queue, "UPDATE_FAILED", "an earlier operation's failure"),
    ]
    stubber.add_response("describe_stack_events", {"StackEvents": events})

    with pytest.raises(StackError) as raised:
        stack.deploy_stack(client, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    message = str(raised.value)
    assert "ROLLBACK_COMPLETE" in message
    assert "TaskQueue: Invalid value for VisibilityTimeout" in message
    assert "DeadLetterQueue: Resource creation cancelled" in message
    assert "earlier" not in message


# AWS rolls a failed create back; LocalStack leaves it in CREATE_FAILED.
@pytest.mark.parametrize("left", ["ROLLBACK_COMPLETE", "CREATE_FAILED"])
def test_a_stack_left_by_a_failed_create_is_deleted_and_created_again(
    stubbed: tuple[Any, Stubber], left: str
) -> None:
    client, stubber = stubbed
    stubber.add_response("describe_stacks", described(left))
    stubber.add_response("describe_stacks", described(left))  # delete_stack's own look
    stubber.add_response("delete_stack", {}, {"StackName": NAME})
    stubber.add_response("describe_stacks", described("DELETE_IN_PROGRESS"))
    stubber.add_client_error("describe_stacks", **MISSING)
    stubber.add_response("create_stack", {"StackId": STACK_ID})
    stubber.add_response("describe_stacks", described("CREATE_COMPLETE", {"TaskQueueName": "q"}))

    outputs = stack.deploy_stack(client, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)

    assert outputs == {"TaskQueueName": "q"}


def test_a_stack_that_does_not_settle_in_time_raises(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("describe_stacks", **MISSING)
    stubber.add_response("create_stack", {"StackId": STACK_ID})
    stubber.add_response("describe_stacks", described("CREATE_IN_PROGRESS"))

    with pytest.raises(StackError, match="still CREATE_IN_PROGRESS after 0 s"):
        stack.deploy_stack(client, NAME, TEMPLATE, PARAMETERS, poll_seconds=0, timeout_seconds=0)


def test_a_stack_stuck_after_a_failed_rollback_is_not_touched(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stubber = stubbed
    stubber.add_response("describe_stacks", described("UPDATE_ROLLBACK_FAILED"))

    with pytest.raises(StackError, match="UPDATE_ROLLBACK_FAILED.*cannot be updated"):
        stack.deploy_stack(client, NAME, TEMPLATE, PARAMETERS, poll_seconds=0)
