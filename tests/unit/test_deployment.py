"""Deploy bookkeeping and the demo's preset, without a local cloud."""

import argparse
import json
from pathlib import Path

import pytest

from burst import settings as burst_settings
from burst.settings import BurstSettings
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


def demo_settings(*argv: str) -> BurstSettings:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return burst_settings.from_args(parser.parse_args(list(argv)))


def test_the_demo_preset_is_a_valid_bounded_burst() -> None:
    settings = demo_settings()

    burst_settings.check(settings)
    assert settings.duration + settings.drain_seconds <= 90
    assert settings.max_seconds + settings.drain_seconds <= 90


def test_the_demo_sends_far_faster_than_one_batch_at_a_time_drains() -> None:
    settings = demo_settings()
    one_batch_tasks_per_s = (
        1000 / settings.payload_options["sleep_ms"]
    )  # 10 tasks in 10 x ms, one batch at a time

    assert settings.task_type == "sleep"
    assert settings.rate >= 10 * one_batch_tasks_per_s  # enough backlog for 10 batches at once
    assert settings.batch > 1  # single POSTs go at ~75/s here


def test_the_demo_takes_burst_options() -> None:
    assert demo_settings("--count", "50", "--type", "echo").count == 50


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
