"""The app deployed to the local cloud under a stage of its own: the user's `local` stage and
.chalice/config.json are left alone. The stage uses short timeouts so retries reach the
dead-letter queue within seconds; the defaults (in .chalice/config.json) stay AWS's advice."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from burst.cloud import Target
from deployment import pipeline
from deployment.pipeline import StageDeployment
from localcloud.aws import client_for_running
from localcloud.settings import Settings
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT_SECONDS = 3
VISIBILITY_TIMEOUT_SECONDS = 3  # the floor: the worker's timeout


@dataclass
class Stage:
    deployment: StageDeployment
    running: dict[str, Any]
    http: requests.Session

    @property
    def api(self) -> str:
        return self.deployment.deployed.api_url

    @property
    def queue_url(self) -> str:
        return self.deployment.outputs["TaskQueueUrl"]

    @property
    def dead_letter_queue_url(self) -> str:
        return self.deployment.outputs["DeadLetterQueueUrl"]

    def client(self, service: str) -> Any:
        return client_for_running(self.running, service)

    @property
    def mapping_uuid(self) -> str:
        return self.deployment.deployed.event_source_mappings["worker"]

    def update_mapping(self, **changes: Any) -> dict[str, Any]:
        """UpdateEventSourceMapping, then wait until the mapping is in the state asked for."""
        lambda_client = self.client("lambda")
        lambda_client.update_event_source_mapping(UUID=self.mapping_uuid, **changes)
        wanted = "Disabled" if changes.get("Enabled") is False else "Enabled"
        mapping: dict[str, Any] = wait_for(
            lambda: lambda_client.get_event_source_mapping(UUID=self.mapping_uuid),
            lambda m: m["State"] == wanted,
            30,
            f"the mapping {wanted}",
        )
        return mapping

    @property
    def worker_function(self) -> str:
        return next(f for f in self.deployment.deployed.functions if f.endswith("-worker"))

    def target(self) -> Target:
        """What the burst tool loads: this stage (its report goes beside its dashboard)."""
        outputs = self.deployment.outputs
        return Target(
            running=self.running,
            api_url=self.api,
            task_queue_url=self.queue_url,
            dead_letter_queue_url=self.dead_letter_queue_url,
            worker_function=self.worker_function,
            event_source_mapping=self.mapping_uuid,
            dashboard_bucket=outputs["DashboardBucketName"],
            dashboard_url=self.deployment.dashboard_url,
            api_key=self.deployment.api_key,
        )

    @property
    def auth_headers(self) -> dict[str, str]:
        """What a client of the write routes sends to be let in: the stage's API key."""
        return {"x-api-key": self.deployment.api_key}

    def post(self, path: str, body: Any) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **self.auth_headers}
        return self.http.post(f"{self.api}{path}", data=data, headers=headers, timeout=30)

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api}tasks/{task_id}", timeout=30)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def deployed_stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    project: Path,
    *,
    worker_timeout_seconds: int,
    visibility_timeout_seconds: int,
) -> Iterator[Stage]:
    """A copy of the app in `project`, deployed under a stage of its own, destroyed after."""
    for name in ("app.py", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "chalicelib", project / "chalicelib")
    (project / ".chalice").mkdir()
    # Each function's policy template: the deploy renders them with this stage's resources.
    shutil.copytree(REPO / ".chalice" / "policies", project / ".chalice" / "policies")
    if (REPO / ".chalice" / "deployments").is_dir():  # Chalice's cache of vendored packages
        shutil.copytree(REPO / ".chalice" / "deployments", project / ".chalice" / "deployments")
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    name = f"e2e{uuid.uuid4().hex[:6]}"
    settings = json.loads(json.dumps(config["stages"]["local"]))
    settings["lambda_functions"]["worker"]["lambda_timeout"] = worker_timeout_seconds
    config["stages"] = {name: settings}
    (project / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))

    deployment = pipeline.deploy(
        localcloud_settings,
        project,
        name,
        visibility_timeout_seconds=visibility_timeout_seconds,
        record=False,
    )
    try:
        with requests.Session() as http:
            yield Stage(deployment, local_cloud, http)
    finally:
        pipeline.destroy(localcloud_settings, project, name, record=False)


@pytest.fixture(scope="session")
def stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path_factory.mktemp("app"),
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
    ) as deployed:
        yield deployed
