"""`chalice deploy` of the app to the local cloud, and the local URLs of what it deployed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud import endpoints
from localcloud.settings import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, Settings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STAGE = "local"


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Deployed:
    stage: str
    api_url: str  # the local form: http://127.0.0.1:4566/_aws/execute-api/ID/STAGE/
    rest_api_id: str
    functions: list[str]
    api_function: str  # the function behind the REST API


def local_api_url(localstack_url: str, rest_api_id: str, api_stage: str) -> str:
    return f"{localstack_url}/_aws/execute-api/{rest_api_id}/{api_stage}/"


def chalice_environment(localstack_url: str, region: str) -> dict[str, str]:
    """Chalice and boto3 take the endpoint from the standard AWS_ENDPOINT_URL: no wrapper."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": localstack_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
    }


def parse_deployed(
    record: dict[str, Any], localstack_url: str, stage: str, api_stage: str
) -> Deployed:
    resources = record["resources"]
    rest_api_id = next(r["rest_api_id"] for r in resources if r["resource_type"] == "rest_api")
    names = {
        r["name"]: r["lambda_arn"].rsplit(":", 1)[1]
        for r in resources
        if r["resource_type"] == "lambda_function"
    }
    url = local_api_url(localstack_url, rest_api_id, api_stage)
    return Deployed(stage, url, rest_api_id, sorted(names.values()), names["api_handler"])


def deploy_stage(running: dict[str, Any], project: Path, stage: str) -> Deployed:
    """`chalice deploy --stage STAGE` of `project` to the local cloud described by `running`
    (a parsed endpoints.json)."""
    localstack_url = running["localstack"]["url"]
    deployed_record = project / ".chalice" / "deployed" / f"{stage}.json"
    _chalice(running, project, "deploy", "--stage", stage)
    config = json.loads((project / ".chalice" / "config.json").read_text())
    api_stage = config["stages"][stage].get("api_gateway_stage", "api")
    return parse_deployed(json.loads(deployed_record.read_text()), localstack_url, stage, api_stage)


def delete_stage(running: dict[str, Any], project: Path, stage: str) -> None:
    _chalice(running, project, "delete", "--stage", stage)


def _chalice(running: dict[str, Any], project: Path, *args: str) -> None:
    chalice = Path(sys.executable).parent / "chalice"
    env = chalice_environment(running["localstack"]["url"], running["region"])
    subprocess.run([str(chalice), *args], cwd=project, env=env, check=True)


def deploy(cfg: Settings, project: Path = PROJECT_ROOT, stage: str = STAGE) -> Deployed:
    """Deploy the app and record its API in endpoints.json for scripts and tests."""
    running = endpoints.load(cfg.endpoints_file)
    if "localstack" not in running:
        raise DeployError(
            f"the local cloud is not up ({cfg.endpoints_file} missing): run scripts/localcloud up"
        )
    deployed_record = project / ".chalice" / "deployed" / f"{stage}.json"
    if "api" not in running and deployed_record.exists():
        # LocalStack keeps no state across restarts: what Chalice recorded is gone.
        logger.info("forgetting %s: it describes an earlier LocalStack", deployed_record)
        deployed_record.unlink()
    result = deploy_stage(running, project, stage)
    endpoints.update(
        cfg.endpoints_file,
        {
            "api": {
                "stage": stage,
                "url": result.api_url,
                "rest_api_id": result.rest_api_id,
                "functions": result.functions,
                "api_function": result.api_function,
            }
        },
    )
    return result
