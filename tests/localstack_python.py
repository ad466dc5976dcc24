"""Run a check script in LocalStack's own interpreter (its venv, Python 3.13), where the
extension's seams into LocalStack can be imported: the seam tests' one way in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from localcloud.settings import Settings

DONE = "seams ok"  # what a check script prints last when every check held


def run_seam_checks(script: str, data_root: Path, timeout_seconds: float = 120) -> None:
    """Run `script`; fail the test unless it exits 0 and ends by printing DONE."""
    cfg = Settings.from_env()
    if not cfg.localstack_python.exists():
        pytest.fail(f"{cfg.localstack_python} missing: run scripts/setup")
    result = subprocess.run(
        [str(cfg.localstack_python), "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        # the CloudWatch database the checks create goes under FILESYSTEM_ROOT, not /tmp/localstack
        env={**os.environ, "FILESYSTEM_ROOT": str(data_root), "OVERRIDE_IN_DOCKER": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(DONE)
