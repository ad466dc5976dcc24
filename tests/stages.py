"""The app deployed to a local cloud under a stage of its own: the user's `local` stage and
.chalice/config.json are left alone. Shared by the e2e tests (tests/e2e/conftest.py) and the
fault suite (tests/faults.py), which deploys to a local cloud of its own.

A stage may override its functions' timeouts and environment variables (the fault suite's
backoff settings, say), so a test states what it depends on instead of inheriting the defaults
of the `local` stage, which stay AWS's advice."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from burst.cloud import Target
from deployment import pipeline
from deployment.pipeline import WORKER, StageDeployment
from localcloud.aws import client_for_running
from localcloud.settings import Settings
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    deployment: StageDeployment
    running: dict[str, Any]
    http: requests.Session
    # The copy of the app it was deployed from: what a redeploy of the same stage needs.
    project: Path | None = None

    @property
    def name(self) -> str:
        return self.deployment.deployed.stage

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
            api_function=self.deployment.deployed.api_function,
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


def copy_app(project: Path) -> None:
    """The app's code and Chalice's cache of vendored packages, into `project`."""
    for name in ("app.py", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "chalicelib", project / "chalicelib")
    (project / ".chalice").mkdir()
    # Each function's policy template: the deploy renders them with this stage's resources.
    shutil.copytree(REPO / ".chalice" / "policies", project / ".chalice" / "policies")
    if (REPO / ".chalice" / "deployments").is_dir():
        shutil.copytree(REPO / ".chalice" / "deployments", project / ".chalice" / "deployments")


def write_stage_config(
    project: Path,
    name: str,
    function_timeouts: Mapping[str, int],
    environment: Mapping[str, str],
) -> None:
    """`project`'s .chalice/config.json: the `local` stage's settings under `name`, with the
    given functions' lambda_timeout (by their names in app.py) and environment variables."""
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    settings = json.loads(json.dumps(config["stages"]["local"]))
    for function, seconds in function_timeouts.items():
        settings.setdefault("lambda_functions", {}).setdefault(function, {})
        settings["lambda_functions"][function]["lambda_timeout"] = seconds
    settings.setdefault("environment_variables", {}).update(environment)
    config["stages"] = {name: settings}
    (project / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))


@contextmanager
def deployed_stage(
    local_cloud: dict[str, Any],
    localcloud_settings: Settings,
    project: Path,
    *,
    worker_timeout_seconds: int,
    visibility_timeout_seconds: int,
    environment: Mapping[str, str] | None = None,
    function_timeouts: Mapping[str, int] | None = None,
    name_prefix: str = "e2e",
    database_proxy: bool = True,
) -> Iterator[Stage]:
    """A copy of the app in `project`, deployed under a stage of its own, destroyed after.
    `environment` overrides the stage's environment variables; `function_timeouts` other
    functions' timeouts (the worker's is `worker_timeout_seconds`); `database_proxy`: the
    functions reach PostgreSQL through the local cloud's proxy (else straight)."""
    copy_app(project)
    name = f"{name_prefix}{uuid.uuid4().hex[:6]}"
    timeouts = {**(function_timeouts or {}), WORKER: worker_timeout_seconds}
    write_stage_config(project, name, timeouts, environment or {})

    deployment = pipeline.deploy(
        localcloud_settings,
        project,
        name,
        visibility_timeout_seconds=visibility_timeout_seconds,
        record=False,
        database_proxy=database_proxy,
    )
    try:
        with requests.Session() as http:
            yield Stage(deployment, local_cloud, http, project)
    finally:
        pipeline.destroy(localcloud_settings, project, name, record=False)
