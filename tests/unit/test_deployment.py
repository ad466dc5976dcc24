"""Deploy bookkeeping and the demo's guards, without a local cloud."""

import argparse
import json
from pathlib import Path

import pytest

from deployment import chalice_stage, demo, pipeline

FUNCTION = "serverless-scaling-local"


def test_local_api_url_has_the_execute_api_form() -> None:
    assert chalice_stage.local_api_url("http://127.0.0.1:4566", "abc123", "api") == (
        "http://127.0.0.1:4566/_aws/execute-api/abc123/api/"
    )


def test_parse_deployed_finds_the_rest_api_and_functions() -> None:
    record = {
        "resources": [
            {
                "name": "default-role",
                "resource_type": "iam_role",
                "role_arn": "arn:aws:iam::1:role/r",
            },
            {
                "name": "api_handler",
                "resource_type": "lambda_function",
                "lambda_arn": f"arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION}",
            },
            {
                "name": "rest_api",
                "resource_type": "rest_api",
                "rest_api_id": "xyz",
                "rest_api_url": "https://xyz.execute-api.us-east-1.amazonaws.com/api/",
            },
        ]
    }

    deployed = chalice_stage.parse_deployed(record, "http://127.0.0.1:4566", "local", "api")

    assert deployed.api_url == "http://127.0.0.1:4566/_aws/execute-api/xyz/api/"
    assert deployed.functions == [FUNCTION]
    assert deployed.api_function == FUNCTION


def test_chalice_gets_the_endpoint_from_the_standard_variable() -> None:
    env = chalice_stage.chalice_environment("http://127.0.0.1:4566", "us-east-1")

    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"


def args(**overrides: object) -> argparse.Namespace:
    values = {"tasks": 10, "fail": 0, "concurrency": 2, "max_seconds": 5.0, **overrides}
    return argparse.Namespace(**values)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"tasks": 0}, "--tasks"),
        ({"tasks": 10**6}, "--tasks"),
        ({"fail": 11}, "--fail"),
        ({"concurrency": 1000}, "--concurrency"),
        ({"max_seconds": 3600}, "--max-seconds"),
    ],
)
def test_demo_refuses_unbounded_bursts(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(demo.DemoError, match=named):
        demo.validate(args(**overrides), "http://127.0.0.1:4566/x")


def test_demo_loads_only_loopback() -> None:
    with pytest.raises(demo.DemoError, match="loopback"):
        demo.validate(args(), "http://10.0.0.5:4566/x")
    demo.validate(args(), "http://localhost:4566/x")


def test_the_task_mix_holds_the_requested_failures() -> None:
    tasks = demo.task_mix(100, fail=7)

    assert len(tasks) == 100
    assert sum(t["type"] == "fail" for t in tasks) == 7
    assert {t["type"] for t in tasks} <= {"echo", "sleep", "cpu", "fail"}


def test_peak_overlap_counts_batches_running_at_once() -> None:
    from datetime import datetime, timedelta

    t0 = datetime(2026, 11, 27)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    spans = [(at(0), at(2)), (at(1), at(3)), (at(1.5), at(1.6)), (at(5), at(6))]

    assert demo.peak_overlap(spans) == 3


def stage_project(tmp_path: Path, **environment: str) -> Path:
    (tmp_path / ".chalice").mkdir()
    stage = {"environment_variables": environment}
    config = {"version": "2.0", "app_name": "x", "stages": {"local": stage}}
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_bad_trigger_setting_stops_the_deploy_naming_the_fix(tmp_path: Path) -> None:
    project = stage_project(
        tmp_path,
        WORKER_BATCH_SIZE="10",
        WORKER_BATCHING_WINDOW_SECONDS="0",
        WORKER_MAX_CONCURRENCY="1",
    )

    with pytest.raises(chalice_stage.DeployError, match="WORKER_MAX_CONCURRENCY=1: must be"):
        pipeline.check_stage_settings(project, "local")


def test_the_projects_own_stage_settings_pass() -> None:
    pipeline.check_stage_settings(chalice_stage.PROJECT_ROOT, "local")


def test_visibility_timeout_is_six_times_the_worker_timeout_and_never_below_it() -> None:
    assert pipeline.visibility_timeout(30, None) == 180
    assert pipeline.visibility_timeout(3, 3) == 3
    with pytest.raises(chalice_stage.DeployError, match="below the worker's timeout"):
        pipeline.visibility_timeout(30, 29)
