"""Lambda on the local cloud: functions run as OS processes behind LocalStack's Lambda API."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.config import Config

from localcloud import procs
from localcloud.aws import client_for_running
from tests.lambda_zip import zip_of

HERE = Path(__file__).resolve().parent
ROLE = "arn:aws:iam::000000000000:role/lambda-role"

HANDLER = """
import json, os, time

print("cold start of", os.environ["AWS_LAMBDA_FUNCTION_NAME"])

def handler(event, context):
    print("handling", context.aws_request_id)
    if event.get("fail"):
        raise RuntimeError("requested failure")
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
            "request_id": context.aws_request_id,
            "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "_"))}}
"""


def wait_for(condition: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll `condition` until it returns something truthy; return that."""
    result: Any = None

    def met() -> bool:
        nonlocal result
        result = condition()
        return bool(result)

    assert procs.poll(met, timeout, 0.2), f"condition not met within {timeout} s"
    return result


@pytest.fixture(scope="module")
def aws(local_cloud: dict[str, Any]) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        config = Config(max_pool_connections=32, read_timeout=120, retries={"max_attempts": 0})
        return client_for_running(local_cloud, service, config)

    return client


@pytest.fixture
def lambda_client(aws: Callable[[str], Any]) -> Any:
    return aws("lambda")


@pytest.fixture
def create_function(lambda_client: Any) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(
        source: str = HANDLER, runtime: str | None = None, wait: bool = True, **kwargs: Any
    ) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        lambda_client.create_function(
            FunctionName=name,
            Runtime=runtime or f"python{sys.version_info.major}.{sys.version_info.minor}",
            Role=ROLE,
            Handler="handler.handler",
            Code={"ZipFile": zip_of(source)},
            **kwargs,
        )
        created.append(name)
        if wait:
            lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
        return name

    yield create
    for name in created:
        lambda_client.delete_function(FunctionName=name)


def invoke(
    lambda_client: Any, name: str, event: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str | None, str]:
    response = lambda_client.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail"
    )
    logs = base64.b64decode(response.get("LogResult", "")).decode()
    return json.loads(response["Payload"].read()), response.get("FunctionError"), logs


def test_created_function_runs_and_sees_the_local_cloud_endpoint(
    lambda_client: Any, create_function: Callable[..., str], local_cloud: dict[str, Any]
) -> None:
    name = create_function()

    result, error, _ = invoke(lambda_client, name)

    assert error is None
    assert result["endpoint"] == local_cloud["localstack"]["url"]
    assert lambda_client.get_function_configuration(FunctionName=name)["State"] == "Active"


def test_function_sees_lambdas_standard_environment(
    lambda_client: Any, create_function: Callable[..., str], local_cloud: dict[str, Any]
) -> None:
    name = create_function(MemorySize=256, Timeout=7)

    env = invoke(lambda_client, name)[0]["env"]

    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == local_cloud["region"]
    assert env["_HANDLER"] == "handler.handler"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"  # as on AWS (a mount namespace here)
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith(tuple("0123456789abcdef"))
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")


def test_unhandled_exception_is_a_function_error(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function()

    result, error, _ = invoke(lambda_client, name, {"fail": True})

    assert error == "Unhandled"
    assert result["errorType"] == "RuntimeError"
    assert result["errorMessage"] == "requested failure"
    assert result["stackTrace"]


def test_timeout_is_reported_and_the_function_recovers(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function(Timeout=1)

    result, error, logs = invoke(lambda_client, name, {"sleep": 30})

    assert error == "Unhandled"
    assert "Task timed out after 1.00 seconds" in result["errorMessage"]
    assert "Status: timeout" in logs
    assert invoke(lambda_client, name)[1] is None


def test_init_error_is_reported(
    aws: Callable[[str], Any], lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function("import no_such_module_here\n")

    result, error, _ = invoke(lambda_client, name)

    assert error == "Unhandled"
    assert result["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_here" in result["errorMessage"]
    messages = wait_for(
        lambda: (
            (found := [e["message"] for e in log_events(aws, name)])
            and any(m.startswith("INIT_REPORT") for m in found)
            and found
        )
    )
    assert messages[0].startswith("INIT_START")
    assert any("no_such_module_here" in m for m in messages)


def test_parallel_invokes_get_one_environment_each_and_reuse_them(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function()
    parallel = 5

    def one_round() -> set[int]:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            results = pool.map(
                lambda _: invoke(lambda_client, name, {"sleep": 1.0})[0], range(parallel)
            )
            return {result["pid"] for result in results}

    first = one_round()
    second = one_round()

    assert len(first) == parallel
    assert second == first


def test_logs_reach_cloudwatch_with_lambdas_platform_lines(
    aws: Callable[[str], Any], lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function()
    request_id = invoke(lambda_client, name)[0]["request_id"]
    logs = aws("logs")

    def messages() -> list[str]:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return []
        found = [event["message"].rstrip("\n") for event in events]
        return found if any(line.startswith("REPORT") for line in found) else []

    lines = wait_for(messages)

    assert f"cold start of {name}" in lines
    assert f"START RequestId: {request_id} Version: $LATEST" in lines
    assert f"handling {request_id}" in lines
    assert f"END RequestId: {request_id}" in lines
    report = next(line for line in lines if line.startswith(f"REPORT RequestId: {request_id}"))
    for field in (
        "Duration:",
        "Billed Duration:",
        "Memory Size: 128 MB",
        "Max Memory Used:",
        "Init Duration:",
    ):
        assert field in report


PAUSING_HANDLER = """
import time

def handler(event, context):
    print("before the pause")
    time.sleep(event["seconds"])
    print("after the pause")
    return {"request_id": context.aws_request_id}
"""


def log_events(aws: Callable[[str], Any], name: str) -> list[dict[str, Any]]:
    """Every event of the function's log group, oldest first (messages without their newline)."""
    logs = aws("logs")
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}")
        events = [event for page in pages for event in page["events"]]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [{**event, "message": event["message"].rstrip("\n")} for event in events]


def test_each_log_event_carries_the_time_its_line_was_written(
    aws: Callable[[str], Any], lambda_client: Any, create_function: Callable[..., str]
) -> None:
    """AWS: each event has the time its line was written; START and END carry theirs, so
    START..END spans the REPORT's Duration (stock LocalStack stamps them all alike)."""
    name = create_function(PAUSING_HANDLER, Timeout=10)
    request_id = invoke(lambda_client, name, {"seconds": 2})[0]["request_id"]

    events = wait_for(
        lambda: (
            (found := log_events(aws, name))
            and any(e["message"].startswith("REPORT") for e in found)
            and found
        )
    )

    def at(prefix: str) -> int:
        return int(next(e["timestamp"] for e in events if e["message"].startswith(prefix)))

    report = next(e["message"] for e in events if e["message"].startswith("REPORT"))
    duration_ms = float(report.split("Duration: ")[1].split(" ms")[0])
    start, end = at(f"START RequestId: {request_id}"), at(f"END RequestId: {request_id}")
    before, after = at("before the pause"), at("after the pause")
    assert start <= before <= after <= end
    assert after - before >= 1500  # the function slept 2 s between the two lines
    assert abs((end - start) - duration_ms) <= 1
    first_words = [e["message"].split(" ")[0] for e in events]
    assert first_words == ["INIT_START", "START", "before", "after", "END", "REPORT"]


def test_a_long_invocations_lines_are_in_cloudwatch_while_it_runs(
    aws: Callable[[str], Any], lambda_client: Any, create_function: Callable[..., str]
) -> None:
    """AWS delivers log lines while the invocation runs, not once it has ended."""
    name = create_function(PAUSING_HANDLER, Timeout=30)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(invoke, lambda_client, name, {"seconds": 10})
        wait_for(
            lambda: any(e["message"] == "before the pause" for e in log_events(aws, name)),
            timeout=9,
        )
        still_running = not running.done()
        running.result()

    assert still_running


def test_log_result_is_the_tail_of_the_invocations_log_without_init_start(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    """AWS: LogType=Tail gives the last 4 KB of the invocation's log, START to REPORT; the
    INIT_START line and the init's output are logged before START and are not in it."""
    name = create_function()

    result, _, tail = invoke(lambda_client, name)

    lines = tail.splitlines()
    assert lines[0] == f"START RequestId: {result['request_id']} Version: $LATEST"
    assert f"handling {result['request_id']}" in lines
    assert lines[-2] == f"END RequestId: {result['request_id']}"
    assert lines[-1].startswith(f"REPORT RequestId: {result['request_id']}")
    assert "Init Duration:" in lines[-1]
    assert not any(line.startswith("INIT_START") for line in lines)
    assert f"cold start of {name}" not in lines


def test_logs_go_to_the_stream_the_function_is_told(
    aws: Callable[[str], Any], lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function()

    env = invoke(lambda_client, name)[0]["env"]

    events = wait_for(
        lambda: (
            (found := log_events(aws, name))
            and any(e["message"].startswith("REPORT") for e in found)
            and found
        )
    )
    assert {e["logStreamName"] for e in events} == {env["AWS_LAMBDA_LOG_STREAM_NAME"]}


RESPONDING_HANDLER = """
def handler(event, context):
    return "x" * event["characters"]
"""


def test_a_response_over_6_mb_is_function_response_size_too_large(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    """AWS: a synchronous response over 6,291,556 bytes is refused with FunctionError Unhandled
    and Function.ResponseSizeTooLarge; one of exactly that size comes back whole."""
    name = create_function(RESPONDING_HANDLER, MemorySize=512)
    limit = 6_291_556

    at_limit = lambda_client.invoke(
        FunctionName=name, Payload=json.dumps({"characters": limit - 2}).encode()
    )
    over = lambda_client.invoke(
        FunctionName=name, Payload=json.dumps({"characters": limit - 1}).encode()
    )

    assert "FunctionError" not in at_limit
    assert len(at_limit["Payload"].read()) == limit
    assert over["FunctionError"] == "Unhandled"
    assert json.loads(over["Payload"].read()) == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": (
            "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
        ),
    }


def test_runtime_without_interpreter_fails_the_function_with_a_reason(
    lambda_client: Any, create_function: Callable[..., str]
) -> None:
    name = create_function(runtime="nodejs20.x", wait=False)

    config = wait_for(
        lambda: (
            (c := lambda_client.get_function_configuration(FunctionName=name))["State"] != "Pending"
            and c
        )
    )

    assert config["State"] == "Failed"
    assert "nodejs20.x" in config["StateReason"]
    assert "Python runtimes" in config["StateReason"]


def test_deleting_a_function_ends_its_processes(lambda_client: Any) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    lambda_client.create_function(
        FunctionName=name,
        Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": zip_of(HANDLER)},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    pid = invoke(lambda_client, name)[0]["pid"]
    assert procs.is_alive(pid)

    lambda_client.delete_function(FunctionName=name)

    assert procs.poll(lambda: not procs.is_alive(pid), 20)


def test_chalice_app_deploys_and_answers_on_its_local_url(
    tmp_path: Path, local_cloud: dict[str, Any]
) -> None:
    project = tmp_path / "chalice_hello"
    shutil.copytree(HERE / "chalice_hello", project)
    stage = f"t{uuid.uuid4().hex[:8]}"
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"][stage] = config["stages"].pop("test")
    config_path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": local_cloud["localstack"]["url"],
        "AWS_DEFAULT_REGION": local_cloud["region"],
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    chalice = str(Path(sys.executable).parent / "chalice")
    subprocess.run(
        [chalice, "deploy", "--stage", stage], cwd=project, env=env, check=True, timeout=300
    )
    try:
        deployed = json.loads((project / ".chalice" / "deployed" / f"{stage}.json").read_text())
        api_id = next(
            r["rest_api_id"] for r in deployed["resources"] if r["resource_type"] == "rest_api"
        )
        url = f"{local_cloud['localstack']['url']}/_aws/execute-api/{api_id}/api/"

        response = requests.get(url, timeout=60)

        assert response.status_code == 200
        assert response.json() == {"hello": "world", "function": f"localcloud-hello-{stage}"}
    finally:
        subprocess.run(
            [chalice, "delete", "--stage", stage], cwd=project, env=env, check=True, timeout=300
        )
