"""The aws stage's templates, packaged here for real (`chalice package`, no AWS access, a copy of
the project with no requirements to vendor, so nothing is downloaded): cfn-lint and its
serverless rules find nothing wrong, the stack has every resource the local deploy makes
(infra/deployment/stack_parity.py), the local stack's resources are in it unchanged, and what
Chalice cannot set is set."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from chalicelib import settings as app_settings
from deployment import aws_package, function_policies, stack_parity
from deployment.chalice_stage import function_name

REPO = Path(__file__).resolve().parents[2]
COPIED = (
    "app.py",
    "chalicelib",
    ".chalice/config.json",
    ".chalice/policies",
    "infra/cloudformation",
)
CHALICE = Path(sys.executable).parent / "chalice"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
REGION = "us-east-1"
# The serverless rules' warnings left as they are: X-Ray tracing on every function and the
# API's stage (billed per trace, and the functions' roles would need xray:PutTraceSegments;
# the app's own correlation id already follows a task through the logs).
ACCEPTED_SERVERLESS_WARNINGS = {"WS1000", "WS2002"}
# What the AWS stack's resources change of the local stack's (aws.yaml says why).
CHANGED_LOCAL_RESOURCES = {
    "AppDatabaseSecret": "its host and port are RDS's endpoint's",
    "DeadLetterQueue": "a cfn-lint Metadata entry only",
}
WITHOUT_VPC = {"Whoami"}


def _copy_project(to: Path) -> Path:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, to / name)
    (to / "requirements.txt").write_text("")  # the template does not depend on the zip's content
    return to


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def sam_template_path(project: Path) -> Path:
    return aws_package.package(project, project / "build" / "aws", CHALICE)


@pytest.fixture(scope="module")
def sam_template(sam_template_path: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(sam_template_path.read_text())
    return template


def expanded(sam: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation's SAM transform makes it (aws-sam-translator, offline:
    the code's S3 location as `aws cloudformation package` would write it)."""
    document = json.loads(json.dumps(sam))
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/deployment.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator asks boto3's session

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    result: dict[str, Any] = transform(document, {"AWS::Region": REGION}, NoManagedPolicies())
    return result


def resource_types(template: dict[str, Any]) -> Counter[str]:
    return Counter(resource["Type"] for resource in template["Resources"].values())


def cfn_lint(path: Path, *options: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(CFN_LINT), "--format", "json", *options, "--", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 2, 4, 6), result.stderr  # 2 errors, 4 warnings, 6 both
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def rule_ids(findings: list[dict[str, Any]]) -> list[str]:
    return [finding["Rule"]["Id"] for finding in findings]


# --- cfn-lint ------------------------------------------------------------------------------


def test_the_packaged_template_passes_cfn_lint_with_no_error_and_no_warning(
    sam_template_path: Path,
) -> None:
    assert rule_ids(cfn_lint(sam_template_path)) == []


def test_the_serverless_rules_find_no_error_and_only_the_accepted_warnings(
    sam_template_path: Path,
) -> None:
    found = rule_ids(cfn_lint(sam_template_path, "--append-rules", "cfn_lint_serverless.rules"))

    assert found, "the serverless rules did not run"  # they always warn about tracing here
    assert set(found) <= ACCEPTED_SERVERLESS_WARNINGS


# --- parity with the local deploy ----------------------------------------------------------


def local_chalice_template(project: Path) -> dict[str, Any]:
    """What `chalice deploy --stage local` makes, as `chalice package` describes it."""
    outputs = {
        "TaskQueueArn": f"arn:aws:sqs:{REGION}:000000000000:q",
        "DeadLetterQueueArn": f"arn:aws:sqs:{REGION}:000000000000:dlq",
        "DatabaseSecretId": f"arn:aws:secretsmanager:{REGION}:000000000000:secret:s",
    }
    resources = function_policies.StageResources.of(outputs, "ns", "worker")
    names = {f: function_name(project, "local", f) for f in ("api_handler", "worker")}
    names |= {f: f for f in ("reconciler", "whoami")}
    function_policies.write_function_policies(project, "local", resources, names)
    out = project / "build" / "local"
    subprocess.run(
        [str(CHALICE), "package", "--stage", "local", str(out)],
        cwd=project,
        env={**os.environ, "AWS_DEFAULT_REGION": REGION},
        check=True,
        capture_output=True,
    )
    template: dict[str, Any] = json.loads((out / "sam.json").read_text())
    return template


def test_every_resource_the_local_deploy_makes_is_on_the_parity_list(project: Path) -> None:
    local_stack = aws_package.load_template(project / aws_package.LOCAL_TEMPLATE)
    chalice_made = expanded(local_chalice_template(project))

    assert resource_types(local_stack) == stack_parity.expected({stack_parity.MadeBy.STACK})
    assert resource_types(chalice_made) == stack_parity.expected({stack_parity.MadeBy.CHALICE})


def test_the_aws_stack_has_everything_on_the_parity_list(sam_template: dict[str, Any]) -> None:
    aws = resource_types(expanded(sam_template))

    missing = stack_parity.expected() - aws
    assert missing == Counter()


def test_the_local_stacks_resources_are_in_the_aws_stack_unchanged(
    project: Path, sam_template: dict[str, Any]
) -> None:
    local = aws_package.load_template(project / aws_package.LOCAL_TEMPLATE)["Resources"]
    aws = sam_template["Resources"]

    changed = {name for name, resource in local.items() if aws.get(name) != resource}
    assert changed == set(CHANGED_LOCAL_RESOURCES)
    assert {k: v for k, v in aws["DeadLetterQueue"].items() if k != "Metadata"} == local[
        "DeadLetterQueue"
    ]


# --- what Chalice cannot set ---------------------------------------------------------------


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_the_worker_answers_partial_batches_on_snapstart_through_its_alias(
    sam_template: dict[str, Any],
) -> None:
    config = json.loads((REPO / ".chalice/config.json").read_text())["stages"]["aws"]
    mappings = [
        resource["Properties"]
        for resource in expanded(sam_template)["Resources"].values()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    worker = functions(sam_template)["Worker"]

    [mapping] = mappings
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {
        "MaximumConcurrency": int(config["environment_variables"]["WORKER_MAX_CONCURRENCY"])
    }
    assert mapping["EventSourceArn"] == {"Fn::Sub": "${TaskQueue.Arn}"}
    assert mapping["FunctionName"] == {"Ref": "WorkerAliaslive"}
    assert worker["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert worker["Runtime"] in ("python3.12", "python3.13", "python3.14")  # SnapStart's


def test_the_functions_get_the_stacks_values_and_no_placeholder_is_left(
    sam_template_path: Path, sam_template: dict[str, Any]
) -> None:
    assert ".invalid" not in sam_template_path.read_text()
    for name, properties in functions(sam_template).items():
        environment = properties["Environment"]["Variables"]
        assert environment[app_settings.METRICS_SINK] == "emf", name
        # Every value the local deploy writes from its stack is the AWS stack's own here.
        for variable in (
            app_settings.TASK_QUEUE_URL,
            app_settings.DATABASE_SECRET_ID,
            app_settings.DATABASE_PROXY_ENDPOINT,
            app_settings.DASHBOARD_ORIGIN,
            app_settings.APP_STAGE,
        ):
            assert isinstance(environment[variable], dict), (name, variable)


def test_the_policies_are_the_local_ones_for_the_same_resources(
    project: Path, sam_template: dict[str, Any]
) -> None:
    arns = {
        "AWS::Region": REGION,
        "AWS::AccountId": "123456789012",
        "Stage": "aws",
        "TaskQueue.Arn": f"arn:aws:sqs:{REGION}:123456789012:q",
        "DeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:123456789012:dlq",
        "AppDatabaseSecret": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:s",
    }
    local = function_policies.StageResources.of(
        {
            "TaskQueueArn": arns["TaskQueue.Arn"],
            "DeadLetterQueueArn": arns["DeadLetterQueue.Arn"],
            "DatabaseSecretId": arns["AppDatabaseSecret"],
        },
        "ServerlessScaling",
        function_name(project, "aws", "worker"),
    )
    roles = {"api_handler": "ApiHandlerRole", "worker": "WorkerRole",
             "reconciler": "ReconcilerRole", "whoami": "WhoamiRole"}  # fmt: skip
    for function, template in function_policies.policy_templates(project).items():
        [policy] = sam_template["Resources"][roles[function]]["Properties"]["Policies"]
        wanted = function_policies.render_policy(
            template, local.placeholders(function_name(project, "aws", function))
        )
        assert resolved(policy["PolicyDocument"], arns) == wanted, function


def resolved(document: Any, values: dict[str, str]) -> Any:
    """`document` with each Fn::Sub replaced by its string, `${X}` as values[X]."""
    if isinstance(document, dict) and set(document) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], document["Fn::Sub"])
    if isinstance(document, dict):
        return {key: resolved(value, values) for key, value in document.items()}
    if isinstance(document, list):
        return [resolved(value, values) for value in document]
    return document


def test_the_vpc_endpoints_are_the_services_the_functions_in_the_vpc_call(
    sam_template: dict[str, Any],
) -> None:
    # CloudWatch's API is `monitoring` to VPC endpoints; Lambda ships logs from outside the VPC.
    endpoint_name = {"cloudwatch": "monitoring"}
    called = set()
    for name, properties in functions(sam_template).items():
        if name in WITHOUT_VPC:
            assert "VpcConfig" not in properties
            continue
        assert properties["VpcConfig"]["SubnetIds"] == [
            {"Ref": "PrivateSubnetA"},
            {"Ref": "PrivateSubnetB"},
        ]
        role = properties["Role"]["Fn::GetAtt"][0]
        [policy] = sam_template["Resources"][role]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                called.add(action.split(":")[0])
    endpoints = {
        resource["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]
        for resource in sam_template["Resources"].values()
        if resource["Type"] == "AWS::EC2::VPCEndpoint"
    }

    assert endpoints == {endpoint_name.get(s, s) for s in called - {"logs"}}


def test_the_database_is_reached_only_from_the_proxy_and_the_proxy_only_from_the_functions(
    sam_template: dict[str, Any],
) -> None:
    ingress = {
        (
            rule["Properties"]["GroupId"]["Fn::GetAtt"][0],
            rule["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0],
            rule["Properties"]["FromPort"],
        )
        for rule in sam_template["Resources"].values()
        if rule["Type"] == "AWS::EC2::SecurityGroupIngress"
    }
    assert ingress == {
        ("ProxySecurityGroup", "FunctionSecurityGroup", 5432),
        ("DatabaseSecurityGroup", "ProxySecurityGroup", 5432),
        ("EndpointSecurityGroup", "FunctionSecurityGroup", 443),
        ("EndpointSecurityGroup", "ProxySecurityGroup", 443),
    }
    database = sam_template["Resources"]["Database"]["Properties"]
    assert database["ManageMasterUserPassword"] is True
    assert database["PubliclyAccessible"] is False


def test_the_printed_deploy_command_sets_every_parameter_without_a_default(
    project: Path, sam_template: dict[str, Any]
) -> None:
    required = {name for name, p in sam_template["Parameters"].items() if "Default" not in p}

    values = aws_package.parameters(project)
    [_, deploy] = aws_package.deploy_commands(Path("build/aws/sam.json"), values)

    assert required <= set(values)
    assert set(values) <= set(sam_template["Parameters"])
    assert all(f"{name}={value}" in deploy for name, value in values.items())
