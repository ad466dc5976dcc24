"""The dashboard's static site (dashboard/) in the stack's bucket, served by S3 website hosting:
the site's files, the chart library installed from the lockfile by scripts/setup (uPlot, from
dashboard/node_modules: never committed), a config.js that tells the page where the API is, and
the burst reports (reports/RUN_ID.json, listed in reports/index.json since the bucket allows no
listing)."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboard"
SITE_DIR = DASHBOARD_DIR / "site"
# Installed by scripts/setup (`npm ci` in dashboard/), uploaded under vendor/.
VENDOR_FILES = {
    "vendor/uPlot.iife.min.js": DASHBOARD_DIR / "node_modules/uplot/dist/uPlot.iife.min.js",
    "vendor/uPlot.min.css": DASHBOARD_DIR / "node_modules/uplot/dist/uPlot.min.css",
}
CONFIG_KEY = "config.js"
REPORTS_PREFIX = "reports/"
REPORTS_INDEX_KEY = f"{REPORTS_PREFIX}index.json"
# Every poll costs the local cloud ~70 ms of LocalStack's CPU (GetMetricData, the queues, the
# invoke): at 2 s watching a drain costs it less than at the 1.5 s first tried.
REFRESH_SECONDS = 2.0
WINDOW_MINUTES = 15
MAX_LISTED_RUNS = 200
# The page and its data change with every deploy and burst: browsers must ask again.
NO_CACHE = "no-cache"
NPM_FIX = "install Node.js and npm (e.g. apt-get install nodejs npm), then rerun scripts/setup"


class SiteError(RuntimeError):
    """The site cannot be uploaded; the message says what to fix."""


@dataclass(frozen=True)
class SiteFile:
    key: str
    path: Path


def site_files(
    site_dir: Path = SITE_DIR, vendor: Mapping[str, Path] = VENDOR_FILES
) -> list[SiteFile]:
    """Every file to upload; the chart library is left out (with a warning) where setup could
    not install it: the rest of the system still comes up, and the page says what is missing."""
    if not (site_dir / "index.html").is_file():
        raise SiteError(f"{site_dir / 'index.html'} is missing: the dashboard's site is not there")
    files = [
        SiteFile(path.relative_to(site_dir).as_posix(), path)
        for path in sorted(site_dir.rglob("*"))
        if path.is_file()
    ]
    missing = [str(path) for path in vendor.values() if not path.is_file()]
    if missing:
        logger.warning(
            "the dashboard's chart library is not installed (%s): %s", ", ".join(missing), NPM_FIX
        )
    else:
        files += [SiteFile(key, path) for key, path in vendor.items()]
    return files


def config_script(api_url: str, stage: str) -> str:
    config = {
        "apiUrl": api_url,
        "stage": stage,
        "refreshSeconds": REFRESH_SECONDS,
        "windowMinutes": WINDOW_MINUTES,
    }
    return f"window.DASHBOARD_CONFIG = {json.dumps(config, sort_keys=True)};\n"


def content_type(key: str) -> str:
    guessed, _ = mimetypes.guess_type(key)
    if guessed in ("text/html", "text/css", "text/javascript", "application/javascript"):
        return f"{guessed}; charset=utf-8"
    return guessed or "application/octet-stream"


def upload_site(s3: Any, bucket: str, api_url: str, stage: str) -> int:
    """Put the site and its config.js into `bucket`; return how many files were put."""
    files = site_files()
    for file in files:
        _put(s3, bucket, file.key, file.path.read_bytes())
    _put(s3, bucket, CONFIG_KEY, config_script(api_url, stage).encode())
    if not _read_index(s3, bucket):
        # The page lists runs from the index; a missing one would be a 404 in its console.
        _put(s3, bucket, REPORTS_INDEX_KEY, json.dumps({"runs": []}).encode())
    return len(files) + 1


def _put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type(key), CacheControl=NO_CACHE
        )
    except (BotoCoreError, ClientError) as e:
        raise SiteError(f"uploading s3://{bucket}/{key} failed: {e}") from e


def empty_bucket(s3: Any, bucket: str) -> None:
    """Delete every object, so that the stack can delete the bucket."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise SiteError(f"emptying s3://{bucket} failed: {e}") from e


# --- burst reports ----------------------------------------------------------------------------


def report_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The run's line in reports/index.json."""
    settings, batches = report["settings"], report["batches"]
    return {
        "run_id": report["run_id"],
        "first_send_at": report["first_send_at"],
        "profile": settings["profile"],
        "task_type": settings["task_type"],
        "tasks": report["tasks"]["accepted"],
        "done": report["done"],
        "failed": report["failed"],
        "integrity_ok": report["integrity"]["ok"],
        "peak_batches": batches["peak_concurrent"],
        "max_concurrency": batches["max_concurrency"],
        "drain_seconds": report["drain"]["seconds"],
        # what the run would cost on AWS (scaling_model.costs); reports before it have none
        "cost_usd": (report.get("cost") or {}).get("total_usd"),
    }


def publish_report(s3: Any, bucket: str, report: Mapping[str, Any]) -> str:
    """Put the report beside the site and list it first in the index; return its key. Two
    bursts finishing in the same instant could each miss the other in the index (S3 has no
    compare-and-swap here): the reports themselves are both kept."""
    key = f"{REPORTS_PREFIX}{report['run_id']}.json"
    _put(s3, bucket, key, json.dumps(report).encode())
    runs = [r for r in _read_index(s3, bucket) if r.get("run_id") != report["run_id"]]
    runs.insert(0, report_summary(report))
    _put(s3, bucket, REPORTS_INDEX_KEY, json.dumps({"runs": runs[:MAX_LISTED_RUNS]}).encode())
    return key


def _read_index(s3: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        body = s3.get_object(Bucket=bucket, Key=REPORTS_INDEX_KEY)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return []
        raise SiteError(f"reading s3://{bucket}/{REPORTS_INDEX_KEY} failed: {e}") from e
    runs: list[dict[str, Any]] = json.loads(body).get("runs", [])
    return runs


def report_link(website_url: str, run_id: str) -> str:
    return f"{website_url}#report={run_id}"
