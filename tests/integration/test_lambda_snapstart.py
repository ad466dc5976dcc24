"""SnapStart through LocalStack's Lambda API, as AWS has it: on for published versions of a function
with `SnapStart: {ApplyOn: PublishedVersions}`, never for $LATEST; a restored environment's REPORT
shows Restore Duration instead of Init Duration."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lambda_zip import zip_of

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
RUNTIME = "python3.12"  # SnapStart for Python: 3.12 and later, on AWS and in LocalStack

HANDLER = """
import os
from snapshot_restore_py import register_after_restore, register_before_snapshot

ORDER = ["init"]

@register_before_snapshot
def first():
    ORDER.append("before 1")

@register_before_snapshot
def second():
    ORDER.append("before 2")

@register_after_restore
def third():
    ORDER.append("after 1")

@register_after_restore
def fourth():
    ORDER.append("after 2")

def handler(event, context):
    return {"order": ORDER, "version": context.function_version,
            "initialization_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def create_snapstart_function(client: Any, source: str) -> str:
    name = f"snapstart-{uuid.uuid4().hex[:10]}"
    client.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": zip_of(source)},
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


@pytest.fixture
def snapstart_function(aws: Callable[[str], Any]) -> Iterator[str]:
    name = create_snapstart_function(aws("lambda"), HANDLER)
    yield name
    aws("lambda").delete_function(FunctionName=name)


def invoke(client: Any, name: str, qualifier: str) -> tuple[dict[str, Any], str]:
    response = client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in response, response["Payload"].read()
    logs = base64.b64decode(response["LogResult"]).decode()
    return json.loads(response["Payload"].read()), logs


def report_line(logs: str) -> str:
    return next(line for line in logs.splitlines() if line.startswith("REPORT"))


def test_a_published_version_is_optimized_and_latest_is_not(
    aws: Callable[[str], Any], snapstart_function: str
) -> None:
    client = aws("lambda")

    version = client.publish_version(FunctionName=snapstart_function)["Version"]

    latest = client.get_function_configuration(FunctionName=snapstart_function)["SnapStart"]
    published = client.get_function_configuration(
        FunctionName=snapstart_function, Qualifier=version
    )["SnapStart"]
    assert latest == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    assert published == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}


def test_a_published_version_restores_with_hooks_and_latest_inits(
    aws: Callable[[str], Any], snapstart_function: str
) -> None:
    client = aws("lambda")
    version = client.publish_version(FunctionName=snapstart_function)["Version"]

    restored, restored_logs = invoke(client, snapstart_function, version)
    latest, latest_logs = invoke(client, snapstart_function, "$LATEST")

    assert restored["order"] == ["init", "before 2", "before 1", "after 1", "after 2"]
    assert restored["initialization_type"] == "snap-start"
    assert "Restore Duration: " in report_line(restored_logs)
    assert "Billed Restore Duration: " in report_line(restored_logs)
    assert "Init Duration" not in report_line(restored_logs)
    assert latest["order"] == ["init"]
    assert latest["initialization_type"] == "on-demand"
    assert "Init Duration: " in report_line(latest_logs)
    assert "Restore Duration" not in report_line(latest_logs)


FAILING_AFTER_RESTORE = """
from snapshot_restore_py import register_after_restore

@register_after_restore
def reopen():
    raise ConnectionError("the database is not there")

def handler(event, context):
    return {}
"""


def test_a_restore_whose_hook_fails_is_the_invoke_api_s_snapstart_exception(
    aws: Callable[[str], Any],
) -> None:
    # AWS: the Invoke API answers 400 SnapStartException (not a function error, FunctionError
    # Unhandled, with a 200).
    client = aws("lambda")
    name = create_snapstart_function(client, FAILING_AFTER_RESTORE)
    try:
        version = client.publish_version(FunctionName=name)["Version"]
        client.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=version)

        with pytest.raises(client.exceptions.SnapStartException) as raised:
            client.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")

        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "the database is not there" in error["Error"]["Message"]
        # $LATEST has no snapshot: the same hook is not run there, and the invoke succeeds
        assert "FunctionError" not in client.invoke(FunctionName=name, Payload=b"{}")
    finally:
        client.delete_function(FunctionName=name)
