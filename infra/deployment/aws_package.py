"""The `aws` stage as deployable CloudFormation: `chalice package --stage aws --merge-template`
over the infrastructure, into build/aws/ (git-ignored). Needs no AWS account; prints how to
deploy what it wrote.

Three steps:
1. the merge template: infra/cloudformation/serverless-scaling.yaml (the local stack, as it is)
   with infra/cloudformation/aws.yaml laid over it (what AWS adds or replaces; null removes),
   written as JSON beside the output;
2. each function's policy, rendered from the same .chalice/policies/ templates by the same code
   as the local deploy (function_policies.render_policy), with CloudFormation's values in place
   of the stack's outputs: `${TaskQueueArn}` becomes `${TaskQueue.Arn}` inside an Fn::Sub, so
   the policies are the local ones, resolved by CloudFormation at deploy time;
3. `chalice package`, which deep-merges the template into the SAM template of the functions,
   their roles, the mapping, the schedule and the API.

The parameters the stack needs (the visibility timeout from the worker's timeout, the sizes the
local cloud has, the write routes' throttle) come from the modules that set them locally."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deployment import chalice_stage, function_policies, pipeline
from deployment.api_access import WRITE_ROUTES_THROTTLE
from deployment.database import app_role_name
from localcloud import database_proxy
from localcloud import settings as localcloud_settings

logger = logging.getLogger(__name__)

STAGE = "aws"
STACK_NAME = f"serverless-scaling-{STAGE}"
LOCAL_TEMPLATE = Path("infra") / "cloudformation" / "serverless-scaling.yaml"
AWS_OVERLAY = Path("infra") / "cloudformation" / "aws.yaml"
OUTPUT_DIR = Path("build") / "aws"
MERGE_TEMPLATE_NAME = "merge-template.json"
PACKAGED_TEMPLATE_NAME = "sam.json"  # what `chalice package` writes (a JSON merge template)
# Chalice needs a region to package but writes none into the template (it uses AWS::Region).
PACKAGING_REGION = "us-east-1"
DATABASE_STORAGE_GIB = 20  # gp3's minimum, billed whether used or not
# What each placeholder of .chalice/policies/*.json is in the stack (CloudFormation's
# Fn::Sub syntax); function names follow the stack's Stage parameter.
STACK_RESOURCES = function_policies.StageResources(
    region="${AWS::Region}",
    account="${AWS::AccountId}",
    task_queue_arn="${TaskQueue.Arn}",
    dead_letter_queue_arn="${DeadLetterQueue.Arn}",
    database_secret_arn="${AppDatabaseSecret}",
    metrics_namespace="",  # the stage's, set in stack_resources()
    worker_function_name="",
)


class PackageError(RuntimeError):
    """Packaging cannot go on; the message says what to fix."""


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, !GetAtt A.B ...) as their long
    forms, as Chalice reads a merge template; a loader of its own, so that PyYAML's SafeLoader
    stays as it was for everyone else."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506
    return document


def overlay(base: Any, extra: Any) -> Any:
    """`extra` over `base`: mappings merge key by key, a None in `extra` removes the key, any
    other value replaces."""
    if not (isinstance(base, dict) and isinstance(extra, dict)):
        return extra
    merged = dict(base)
    for key, value in extra.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = overlay(base.get(key), value)
    return merged


def merge_template(project: Path) -> dict[str, Any]:
    """The local stack with the AWS overlay: what `chalice package` merges into its own."""
    merged: dict[str, Any] = overlay(
        load_template(project / LOCAL_TEMPLATE), load_template(project / AWS_OVERLAY)
    )
    return merged


def stack_resources(project: Path) -> function_policies.StageResources:
    environment = chalice_stage.stage_config(project, STAGE).get("environment_variables", {})
    namespace = environment.get("POWERTOOLS_METRICS_NAMESPACE")
    if not namespace:
        raise PackageError(
            f"{chalice_stage.config_path(project)}, stage {STAGE!r}: set "
            "POWERTOOLS_METRICS_NAMESPACE (the policies allow PutMetricData to it only)"
        )
    return function_policies.StageResources(
        **{
            **STACK_RESOURCES.__dict__,
            "metrics_namespace": namespace,
            "worker_function_name": chalice_stage.function_name(project, "${Stage}", "worker"),
        }
    )


def with_substitutions(document: Any) -> Any:
    """Every string holding a `${...}` as an Fn::Sub, for CloudFormation to resolve."""
    if isinstance(document, dict):
        return {key: with_substitutions(value) for key, value in document.items()}
    if isinstance(document, list):
        return [with_substitutions(value) for value in document]
    if isinstance(document, str) and "${" in document:
        return {"Fn::Sub": document}
    return document


def write_function_policies(project: Path) -> dict[str, str]:
    """Render each function's policy for the stack into .chalice/ (git-ignored) under the name
    the aws stage's iam_policy_file gives; returns function -> file."""
    resources = stack_resources(project)
    files: dict[str, str] = {}
    for function, template in function_policies.policy_templates(project).items():
        name = chalice_stage.function_name(project, "${Stage}", function)
        document = function_policies.render_policy(template, resources.placeholders(name))
        file_name = function_policies.rendered_file_name(STAGE, function)
        path = project / ".chalice" / file_name
        path.write_text(json.dumps(with_substitutions(document), indent=2) + "\n")
        files[function] = file_name
    return files


def parameters(project: Path) -> dict[str, str]:
    """The stack's parameters, each from where the local deploy or the local cloud sets it."""
    worker_timeout = chalice_stage.function_timeout(project, STAGE, pipeline.WORKER)
    return {
        "Stage": STAGE,
        "VisibilityTimeoutSeconds": str(pipeline.visibility_timeout(worker_timeout, None)),
        "DatabaseName": localcloud_settings.PG_DATABASE,
        "DatabaseOwner": localcloud_settings.PG_OWNER_ROLE,
        "AppDatabaseRole": app_role_name(STAGE),
        "DatabaseInstanceClass": localcloud_settings.DB_INSTANCE_CLASS,
        "DatabaseStorageGiB": str(DATABASE_STORAGE_GIB),
        "ProxyMaxConnectionsPercent": str(localcloud_settings.PROXY_MAX_CONNECTIONS_PERCENT),
        "ProxyConnectionBorrowTimeoutSeconds": str(database_proxy.QUERY_WAIT_TIMEOUT_S),
        "WriteRoutesRateLimit": f"{WRITE_ROUTES_THROTTLE.rate_per_second:g}",
        "WriteRoutesBurstLimit": str(WRITE_ROUTES_THROTTLE.burst),
    }


def package(project: Path, output: Path, chalice: Path | None = None) -> Path:
    """Write the deployable SAM template and the functions' zip into `output`; returns the
    template's path."""
    output.mkdir(parents=True, exist_ok=True)
    merge = output / MERGE_TEMPLATE_NAME
    merge.write_text(json.dumps(merge_template(project), indent=2) + "\n")
    write_function_policies(project)
    command = [
        str(chalice or Path(sys.executable).parent / "chalice"),
        "package",
        "--stage",
        STAGE,
        "--merge-template",
        str(merge.resolve()),
        str(output.resolve()),
    ]
    environment = {"AWS_DEFAULT_REGION": PACKAGING_REGION, **os.environ}
    environment.pop("AWS_ENDPOINT_URL", None)  # the local cloud has no part in this
    result = subprocess.run(command, cwd=project, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"chalice package failed:\n{result.stdout}{result.stderr}")
    return output / PACKAGED_TEMPLATE_NAME


def deploy_commands(template: Path, values: Mapping[str, str]) -> list[str]:
    """What deploys the packaged template: upload the zip, then create or update the stack."""
    packaged = template.with_name("packaged.yaml")
    overrides = " ".join(f"{key}={value}" for key, value in values.items())
    return [
        f"aws cloudformation package --template-file {template} --s3-bucket YOUR_BUCKET "
        f"--output-template-file {packaged}",
        f"aws cloudformation deploy --template-file {packaged} --stack-name {STACK_NAME} "
        f"--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --parameter-overrides {overrides}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/package-aws", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help="default: build/aws")
    args = parser.parse_args(argv)
    project = chalice_stage.PROJECT_ROOT
    output = args.out if args.out.is_absolute() else project / args.out
    print(f"packaging the {STAGE} stage into {output} ...")
    try:
        template = package(project, output)
    except (PackageError, chalice_stage.DeployError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"template:       {template}")
    print(f"merge template: {output / MERGE_TEMPLATE_NAME}")
    print(f"function code:  {output / 'deployment.zip'}")
    print("deploy it (AWS credentials, a bucket for the code; README: Real AWS):")
    for command in deploy_commands(template.relative_to(project), parameters(project)):
        print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
