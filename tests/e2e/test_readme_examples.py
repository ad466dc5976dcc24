"""The README's "Try it" commands, run as a user would run them, against the `local` stage
deployed as scripts/deploy deploys it: if they stop working, this fails."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deployment import pipeline
from localcloud.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- readme-test -->"


def readme_examples() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no ```bash block after {MARKER}"
    return match.group(1)


@pytest.fixture(scope="module")
def local_stage(local_cloud: dict[str, Any], localcloud_settings: Settings) -> None:
    pipeline.deploy(localcloud_settings)


def test_the_readme_examples_run(local_stage: None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_examples()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    for expected in (
        '"status":"ok"',  # health
        '"outcome":"accepted"',  # POST /tasks
        '"accepted":2',  # POST /tasks/batch
        '"dead_letter_queue"',  # status
        "serverless-scaling-local-tasks",  # get-queue-url
        "ReportBatchItemFailures",  # the mapping
        '"function_name": "serverless-scaling-local-whoami"',  # lambda invoke
        "TaskQueueUrl",  # the stack's outputs
    ):
        assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
