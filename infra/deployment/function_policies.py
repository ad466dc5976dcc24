"""Least privilege per function: each Lambda function of the app gets a role of its own whose
policy names only what its code calls (its queue, its secret, its metrics namespace, its log
group). The policies are committed as templates, `.chalice/policies/FUNCTION.json`, where
`${TaskQueueArn}` and the like stand for the stage's resources; the deploy renders them from
the stack's outputs into `.chalice/policy-STAGE-FUNCTION.json` (generated, git-ignored) and
points Chalice at them (`autogen_policy: false`, `iam_policy_file` per function).

tests/unit/test_function_policies.py proves each policy against the function's own code."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployment.chalice_stage import DeployError

POLICIES_DIR = Path(".chalice") / "policies"


@dataclass(frozen=True)
class StageResources:
    """What the templates' placeholders stand for, in one stage."""

    region: str
    account: str
    task_queue_arn: str
    dead_letter_queue_arn: str
    database_secret_arn: str
    metrics_namespace: str
    worker_function_name: str

    @classmethod
    def of(
        cls, outputs: Mapping[str, str], metrics_namespace: str, worker_function_name: str
    ) -> StageResources:
        """From the stack's outputs (region and account as the task queue's ARN has them)."""
        _, _, _, region, account, _ = outputs["TaskQueueArn"].split(":", 5)
        return cls(
            region=region,
            account=account,
            task_queue_arn=outputs["TaskQueueArn"],
            dead_letter_queue_arn=outputs["DeadLetterQueueArn"],
            database_secret_arn=outputs["DatabaseSecretId"],
            metrics_namespace=metrics_namespace,
            worker_function_name=worker_function_name,
        )

    def placeholders(self, function_name: str) -> dict[str, str]:
        """The values for the function deployed as `function_name` (its log group's ARN)."""
        prefix = f"arn:aws:lambda:{self.region}:{self.account}"
        return {
            "Region": self.region,
            "Account": self.account,
            "TaskQueueArn": self.task_queue_arn,
            "DeadLetterQueueArn": self.dead_letter_queue_arn,
            "DatabaseSecretArn": self.database_secret_arn,
            "MetricsNamespace": self.metrics_namespace,
            "WorkerFunctionArn": f"{prefix}:function:{self.worker_function_name}",
            "LogGroupArn": (
                f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/lambda/{function_name}"
            ),
        }


def policy_templates(project: Path) -> dict[str, Path]:
    """Function name in app.py -> its policy template."""
    directory = project / POLICIES_DIR
    templates = {path.stem: path for path in sorted(directory.glob("*.json"))}
    if not templates:
        raise DeployError(
            f"{directory} holds no policy templates: every function needs one "
            "(.chalice/policies/FUNCTION.json, FUNCTION as app.py names it)"
        )
    return templates


def render_policy(template: Path, values: Mapping[str, str]) -> dict[str, Any]:
    try:
        text = string.Template(template.read_text()).substitute(values)
    except KeyError as e:
        raise DeployError(
            f"{template} uses ${{{e.args[0]}}}, which the deploy does not provide: use one of "
            f"{', '.join(sorted(values))} (infra/deployment/function_policies.py)"
        ) from None
    except ValueError as e:
        raise DeployError(f"{template}: {e}; write a literal $ as $$") from None
    try:
        document: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeployError(f"{template} is not JSON once rendered: {e}") from None
    return document


def rendered_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def write_function_policies(
    project: Path, stage: str, resources: StageResources, function_names: Mapping[str, str]
) -> dict[str, str]:
    """Render every template for `stage` into .chalice/; return function -> file name (as
    Chalice's iam_policy_file wants it: relative to .chalice/). `function_names` maps a
    function's name in app.py to the name it is deployed as."""
    files: dict[str, str] = {}
    for function, template in policy_templates(project).items():
        document = render_policy(template, resources.placeholders(function_names[function]))
        name = rendered_file_name(stage, function)
        (project / ".chalice" / name).write_text(json.dumps(document, indent=2) + "\n")
        files[function] = name
    return files
