"""The dashboard's site in its bucket (moto's S3): what the deploy uploads, the page's config,
the burst reports and their index, and emptying the bucket for a destroy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployment import dashboard_site
from localcloud.aws import s3_website_url

BUCKET = "site-bucket"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_the_site_its_chart_library_and_its_config_are_uploaded(s3: Any) -> None:
    uploaded = dashboard_site.upload_site(s3, BUCKET, "http://127.0.0.1:4566/api/", "local")

    found = keys(s3)
    assert {"index.html", "error.html", "config.js", "reports/index.json"} <= found
    assert set(dashboard_site.VENDOR_FILES) <= found  # scripts/setup installed uPlot
    assert uploaded == len(found) - 1  # all but the empty index
    index = s3.get_object(Bucket=BUCKET, Key="index.html")
    assert index["ContentType"] == "text/html; charset=utf-8"
    assert index["CacheControl"] == "no-cache"
    config = s3.get_object(Bucket=BUCKET, Key="config.js")["Body"].read().decode()
    assert config.startswith("window.DASHBOARD_CONFIG = ")
    assert json.loads(config.removeprefix("window.DASHBOARD_CONFIG = ").rstrip(";\n")) == {
        "apiUrl": "http://127.0.0.1:4566/api/",
        "stage": "local",
        "refreshSeconds": dashboard_site.REFRESH_SECONDS,
        "windowMinutes": dashboard_site.WINDOW_MINUTES,
    }


def test_without_the_chart_library_the_site_still_goes_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    files = dashboard_site.site_files(tmp_path, {"vendor/x.js": tmp_path / "missing.js"})

    assert [f.key for f in files] == ["index.html"]
    assert "npm" in caplog.text


def test_a_missing_site_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(dashboard_site.SiteError, match="index.html is missing"):
        dashboard_site.site_files(tmp_path)


def report(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "first_send_at": "2026-12-01T10:00:00+00:00",
        "settings": {"profile": "steady", "task_type": "sleep"},
        "tasks": {"accepted": 600},
        "done": 600,
        "failed": 0,
        "integrity": {"ok": True},
        "batches": {"peak_concurrent": 10, "max_concurrency": 10},
        "drain": {"seconds": 21.4},
        "cost": {"total_usd": 0.0123},
    }


def test_reports_are_listed_newest_first_once_each(s3: Any) -> None:
    for run_id in ("run-1", "run-2", "run-1"):
        key = dashboard_site.publish_report(s3, BUCKET, report(run_id))
        assert key == f"reports/{run_id}.json"

    index = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/index.json")["Body"].read())
    assert [r["run_id"] for r in index["runs"]] == ["run-1", "run-2"]
    assert index["runs"][0] == {
        "run_id": "run-1",
        "first_send_at": "2026-12-01T10:00:00+00:00",
        "profile": "steady",
        "task_type": "sleep",
        "tasks": 600,
        "done": 600,
        "failed": 0,
        "integrity_ok": True,
        "peak_batches": 10,
        "max_concurrency": 10,
        "drain_seconds": 21.4,
        "cost_usd": 0.0123,
    }
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/run-2.json")["Body"].read())
    assert stored == report("run-2")


def test_a_report_from_before_costs_is_listed_without_one(s3: Any) -> None:
    old = {k: v for k, v in report("run-0").items() if k != "cost"}
    dashboard_site.publish_report(s3, BUCKET, old)

    index = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/index.json")["Body"].read())
    assert index["runs"][0]["cost_usd"] is None


def test_a_deploy_keeps_the_runs_already_listed(s3: Any) -> None:
    dashboard_site.publish_report(s3, BUCKET, report("run-1"))
    dashboard_site.upload_site(s3, BUCKET, "http://api/", "local")

    index = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/index.json")["Body"].read())
    assert [r["run_id"] for r in index["runs"]] == ["run-1"]


def test_emptying_the_bucket_removes_every_object(s3: Any) -> None:
    dashboard_site.upload_site(s3, BUCKET, "http://api/", "local")
    dashboard_site.empty_bucket(s3, BUCKET)
    assert keys(s3) == set()
    dashboard_site.empty_bucket(s3, "no-such-bucket")  # nothing to empty: fine


def test_the_printed_url_is_one_a_browser_reaches_offline() -> None:
    running = {"localstack": {"url": "http://127.0.0.1:4577"}}
    url = s3_website_url(running, "my-bucket")
    assert url == "http://my-bucket.s3-website.localhost:4577/"
    assert dashboard_site.report_link(url, "r1") == f"{url}#report=r1"
