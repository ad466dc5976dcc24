"""The project's own app, deployed to the local cloud with Chalice, answering a small burst."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deployment import chalice_stage, demo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployed_app(
    local_cloud: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[chalice_stage.Deployed]:
    """The app deployed under a stage of its own, so the user's `local` stage is left alone."""
    project = tmp_path_factory.mktemp("app")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "chalicelib", project / "chalicelib")
    (project / ".chalice").mkdir()
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    stage = f"e2e{uuid.uuid4().hex[:6]}"
    config["stages"] = {stage: config["stages"]["local"]}
    (project / ".chalice" / "config.json").write_text(json.dumps(config))

    yield chalice_stage.deploy_stage(local_cloud, project, stage)

    chalice_stage.delete_stage(local_cloud, project, stage)


def test_health_answers_on_the_local_url(deployed_app: chalice_stage.Deployed) -> None:
    response = requests.get(f"{deployed_app.api_url}health", timeout=60)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_burst_is_served_by_several_concurrent_environments(
    deployed_app: chalice_stage.Deployed,
) -> None:
    result = demo.burst(f"{deployed_app.api_url}whoami", count=40, concurrency=4, max_seconds=60)

    assert result.statuses == {200: 40}
    assert not result.errors
    assert 2 <= len(result.environments) <= 4
