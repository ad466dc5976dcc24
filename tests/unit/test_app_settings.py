"""The functions' settings: required variables fail fast and name themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.errors import SettingMissing
from chalicelib.settings import (
    Backoff,
    DashboardAccess,
    DatabaseEndpoint,
    MetricsSink,
    Settings,
    WorkerTrigger,
)

# From the stack's outputs (written by scripts/deploy) ...
FROM_DEPLOY = {
    "TASK_QUEUE_URL": "http://q",
    "DEAD_LETTER_QUEUE_URL": "http://dlq",
    "DATABASE_SECRET_ID": "secret",
    "TASK_MAX_RECEIVES": "5",
    "TASK_QUEUE_NAME": "tasks",
    "DEAD_LETTER_QUEUE_NAME": "tasks-dlq",
    "APP_STAGE": "local",
    "WORKER_FUNCTION_NAME": "app-local-worker",
    "EVENT_SOURCE_MAPPING_METRICS_NAMESPACE": "",
    "DATABASE_PROXY_ENDPOINT": "127.0.0.1:16432",
}
# ... and set by hand per stage in .chalice/config.json.
FROM_STAGE_CONFIG = {
    "POWERTOOLS_METRICS_NAMESPACE": "ServerlessScaling",
    "POWERTOOLS_SERVICE_NAME": "serverless-scaling",
    "TASK_RETRY_BACKOFF_BASE_SECONDS": "1",
    "TASK_RETRY_BACKOFF_MAX_SECONDS": "30",
    "METRICS_SINK": "put_metric_data",
}
SETTINGS = {**FROM_DEPLOY, **FROM_STAGE_CONFIG}
TRIGGER = {
    "TASK_QUEUE_NAME": "tasks",
    "WORKER_BATCH_SIZE": "10",
    "WORKER_BATCHING_WINDOW_SECONDS": "0",
    "WORKER_MAX_CONCURRENCY": "10",
}


def test_settings_read_from_the_environment() -> None:
    assert Settings.from_env(SETTINGS) == Settings(
        "http://q",
        "http://dlq",
        "secret",
        DatabaseEndpoint("127.0.0.1", 16432),
        5,
        "ServerlessScaling",
        "serverless-scaling",
        "local",
        "tasks",
        "tasks-dlq",
        "app-local-worker",
        "",
        Backoff(base_s=1, max_s=30),
        MetricsSink.PUT_METRIC_DATA,
    )
    assert WorkerTrigger.from_env(TRIGGER) == WorkerTrigger("tasks", 10, 0, 10)


@pytest.mark.parametrize(
    ("name", "fix"),
    [(name, "scripts/deploy") for name in sorted(FROM_DEPLOY)]
    + [(name, r"\.chalice/config\.json") for name in sorted(FROM_STAGE_CONFIG)],
)
def test_a_missing_setting_names_the_variable_and_the_fix(name: str, fix: str) -> None:
    env = {k: v for k, v in SETTINGS.items() if k != name}

    with pytest.raises(SettingMissing, match=f"{name} is not set.*{fix}"):
        Settings.from_env(env)


def test_an_empty_proxy_endpoint_means_straight_to_the_database() -> None:
    settings = Settings.from_env({**SETTINGS, "DATABASE_PROXY_ENDPOINT": ""})

    assert settings.database_proxy is None


@pytest.mark.parametrize("endpoint", ["127.0.0.1", "proxy:port", ":5432", "host:70000"])
def test_a_malformed_proxy_endpoint_names_the_variable_and_its_form(endpoint: str) -> None:
    with pytest.raises(SettingMissing, match="DATABASE_PROXY_ENDPOINT=.*HOST:PORT"):
        Settings.from_env({**SETTINGS, "DATABASE_PROXY_ENDPOINT": endpoint})


def test_the_local_stage_sets_the_metrics_settings() -> None:
    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice/config.json").read_text())
    environment = config["stages"]["local"]["environment_variables"]

    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "ServerlessScaling"
    assert environment["POWERTOOLS_SERVICE_NAME"]


def test_the_metrics_sink_is_one_the_app_has_and_the_error_lists_them() -> None:
    assert Settings.from_env({**SETTINGS, "METRICS_SINK": "emf"}).metrics_sink is MetricsSink.EMF

    with pytest.raises(SettingMissing, match="METRICS_SINK='cloudwatch': must be one of put_"):
        Settings.from_env({**SETTINGS, "METRICS_SINK": "cloudwatch"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"WORKER_BATCH_SIZE": "ten"}, "WORKER_BATCH_SIZE='ten': must be an integer"),
        ({"WORKER_MAX_CONCURRENCY": "1"}, "WORKER_MAX_CONCURRENCY=1: must be between 2 and 1000"),
        ({"WORKER_BATCH_SIZE": "100"}, "needs WORKER_BATCHING_WINDOW_SECONDS >= 1"),
    ],
)
def test_a_bad_trigger_setting_says_what_is_wrong(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingMissing, match=message):
        WorkerTrigger.from_env({**TRIGGER, **changes})


def test_the_dashboard_origin_is_an_origin_and_nothing_more() -> None:
    origin = "http://site.s3-website.localhost:4566"
    assert DashboardAccess.from_env({"DASHBOARD_ORIGIN": origin}).origin == origin

    for bad in ("site.localhost", "http://site.localhost/", ""):
        with pytest.raises(SettingMissing, match="DASHBOARD_ORIGIN"):
            DashboardAccess.from_env({"DASHBOARD_ORIGIN": bad})


def test_the_backoff_doubles_per_receive_up_to_its_cap_and_base_zero_turns_it_off() -> None:
    backoff = Backoff(base_s=1, max_s=30)

    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10_000) == 30
    assert Backoff(base_s=0, max_s=30).delay(3) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"TASK_RETRY_BACKOFF_BASE_SECONDS": "-1"}, "BASE_SECONDS=-1: must be between 0"),
        ({"TASK_RETRY_BACKOFF_MAX_SECONDS": "50000"}, "MAX_SECONDS=50000: must be between 1"),
    ],
)
def test_a_bad_backoff_setting_says_what_is_wrong(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingMissing, match=message):
        Settings.from_env({**SETTINGS, **changes})
