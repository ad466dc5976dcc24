"""The deploy's SnapStart step against the local cloud: a Python 3.13 function gets SnapStart on
its published versions, an alias, and its SQS mapping invokes the alias, again after a redeploy;
a runtime without SnapStart keeps its mapping on the function."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deployment import snapstart
from tests.integration.conftest import ROLE
from tests.lambda_zip import zip_of
from tests.polling import wait_for

HANDLER = "def handler(event, context):\n    return {'batchItemFailures': []}\n"


@pytest.fixture
def mapped_function(
    aws: Callable[[str], Any], create_queue: Callable[..., str]
) -> Iterator[Callable[[str], tuple[str, str, str]]]:
    """mapped_function(runtime) -> (function name, mapping UUID, queue URL)."""
    client = aws("lambda")
    made: list[tuple[str, str]] = []

    def make(runtime: str) -> tuple[str, str, str]:
        name = f"snap-{uuid.uuid4().hex[:10]}"
        client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE,
            Handler="handler.handler",
            Code={"ZipFile": zip_of(HANDLER)},
            Timeout=10,
        )
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        url = create_queue(f"{name}-q")
        arn = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        mapping = client.create_event_source_mapping(
            FunctionName=name, EventSourceArn=arn["Attributes"]["QueueArn"], BatchSize=1
        )["UUID"]
        made.append((name, mapping))
        return name, mapping, url

    yield make
    for name, mapping in made:
        client.delete_event_source_mapping(UUID=mapping)
        client.delete_function(FunctionName=name)


def test_the_worker_s_mapping_invokes_an_alias_of_a_snapstart_version(
    aws: Callable[[str], Any], mapped_function: Callable[[str], tuple[str, str, str]]
) -> None:
    client = aws("lambda")
    name, mapping, queue_url = mapped_function("python3.13")

    alias_arn = snapstart.apply(client, name, mapping)
    again = snapstart.apply(client, name, mapping)  # a redeploy with nothing changed

    assert alias_arn is not None and alias_arn.endswith(f":{name}:live")
    assert again == alias_arn
    # (LocalStack's GetFunctionConfiguration resolves no alias: read the alias's version)
    version = client.get_alias(FunctionName=name, Name=snapstart.ALIAS)["FunctionVersion"]
    config = client.get_function_configuration(FunctionName=name, Qualifier=version)
    assert config["SnapStart"]["ApplyOn"] == "PublishedVersions"
    assert config["Version"] != "$LATEST"
    assert client.get_event_source_mapping(UUID=mapping)["FunctionArn"] == alias_arn
    # the alias's function takes the queue's messages
    aws("sqs").send_message(QueueUrl=queue_url, MessageBody="{}")
    wait_for(
        lambda: aws("sqs").get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"],
        lambda a: (
            a["ApproximateNumberOfMessages"] == a["ApproximateNumberOfMessagesNotVisible"] == "0"
        ),
        60,
        "the message processed through the alias",
    )


def test_a_runtime_without_snapstart_keeps_the_mapping_on_the_function(
    aws: Callable[[str], Any], mapped_function: Callable[[str], tuple[str, str, str]]
) -> None:
    client = aws("lambda")
    name, mapping, _ = mapped_function("python3.11")

    assert snapstart.apply(client, name, mapping) is None

    function_arn = client.get_function_configuration(FunctionName=name)["FunctionArn"]
    assert client.get_event_source_mapping(UUID=mapping)["FunctionArn"] == function_arn
