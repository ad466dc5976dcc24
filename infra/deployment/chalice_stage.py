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

from localcloud.settings import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STAGE = "local"


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says what to fix."""


# Chalice's default when neither the function nor the stage sets lambda_timeout.
CHALICE_DEFAULT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Deployed:
    stage: str
    api_url: str  # the local form: http://127.0.0.1:4566/_aws/execute-api/ID/STAGE/
    rest_api_id: str
    functions: list[str]
    api_function: str  # the function behind the REST API
    event_source_mappings: dict[str, str]  # function's name in app.py -> the mapping's UUID


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
    mappings = {
        r["name"].removesuffix("-sqs-event-source"): r["event_uuid"]
        for r in resources
        if r["resource_type"] == "sqs_event"
    }
    url = local_api_url(localstack_url, rest_api_id, api_stage)
    return Deployed(stage, url, rest_api_id, sorted(names.values()), names["api_handler"], mappings)


def config_path(project: Path) -> Path:
    return project / ".chalice" / "config.json"


def stage_config(project: Path, stage: str) -> dict[str, Any]:
    config = json.loads(config_path(project).read_text())
    try:
        stage_section: dict[str, Any] = config["stages"][stage]
    except KeyError:
        raise DeployError(
            f'{config_path(project)} has no stage {stage!r}: add it under "stages"'
        ) from None
    return stage_section


def function_timeout(project: Path, stage: str, function: str) -> int:
    """The function's lambda_timeout as Chalice resolves it: function, then stage, then default."""
    section = stage_config(project, stage)
    own = section.get("lambda_functions", {}).get(function, {})
    return int(
        own.get("lambda_timeout", section.get("lambda_timeout", CHALICE_DEFAULT_TIMEOUT_SECONDS))
    )


def app_name(project: Path) -> str:
    name: str = json.loads(config_path(project).read_text())["app_name"]
    return name


def api_gateway_stage(project: Path, stage: str) -> str:
    """The REST API's stage Chalice deploys `stage` to (its api_gateway_stage)."""
    name: str = stage_config(project, stage).get("api_gateway_stage", "api")
    return name


API_HANDLER = "api_handler"  # Chalice's name for the function behind the REST API


def function_name(project: Path, stage: str, function: str) -> str:
    """The Lambda function Chalice deploys for `function` (its name in app.py) in `stage`;
    the REST API's (api_handler) goes without a suffix."""
    if function == API_HANDLER:
        return f"{app_name(project)}-{stage}"
    return f"{app_name(project)}-{stage}-{function}"


def write_function_policies(project: Path, stage: str, policy_files: dict[str, str]) -> bool:
    """No generated policy (`autogen_policy: false`): each function's role gets the policy
    file named here (function in app.py -> file in .chalice/). Returns whether the file
    changed."""
    path = config_path(project)
    config = json.loads(path.read_text())
    section = config["stages"][stage]
    functions = section.setdefault("lambda_functions", {})
    wanted = {function: {"iam_policy_file": name} for function, name in policy_files.items()}
    current = {
        function: {"iam_policy_file": functions.get(function, {}).get("iam_policy_file")}
        for function in wanted
    }
    if section.get("autogen_policy") is False and current == wanted:
        return False
    section["autogen_policy"] = False
    for function, name in policy_files.items():
        functions.setdefault(function, {})["iam_policy_file"] = name
    path.write_text(json.dumps(config, indent=2) + "\n")
    return True


def write_stage_environment(project: Path, stage: str, values: dict[str, str]) -> bool:
    """Set the stage's environment_variables from `values` (the stack's outputs), keeping the
    rest of the file as it is. Returns whether the file changed."""
    path = config_path(project)
    config = json.loads(path.read_text())
    environment = config["stages"][stage].setdefault("environment_variables", {})
    if all(environment.get(k) == v for k, v in values.items()):
        return False
    environment.update(values)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return True


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
