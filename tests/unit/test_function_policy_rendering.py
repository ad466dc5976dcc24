"""Rendering a function's policy template for a stage (deployment/function_policies.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployment.chalice_stage import DeployError
from deployment.function_policies import StageResources, render_policy

OUTPUTS = {
    "TaskQueueArn": "arn:aws:sqs:eu-west-1:111122223333:serverless-scaling-prod-tasks",
    "DeadLetterQueueArn": "arn:aws:sqs:eu-west-1:111122223333:serverless-scaling-prod-tasks-dlq",
    "DatabaseSecretId": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:s-AbCdEf",
}


def test_the_stages_region_account_and_names_fill_the_placeholders() -> None:
    resources = StageResources.of(OUTPUTS, "ServerlessScaling", "serverless-scaling-prod-worker")

    values = resources.placeholders("serverless-scaling-prod")

    assert values["WorkerFunctionArn"] == (
        "arn:aws:lambda:eu-west-1:111122223333:function:serverless-scaling-prod-worker"
    )
    assert values["LogGroupArn"] == (
        "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/serverless-scaling-prod"
    )
    assert (values["Region"], values["Account"]) == ("eu-west-1", "111122223333")


def test_an_unknown_placeholder_stops_the_deploy_naming_it(tmp_path: Path) -> None:
    template = tmp_path / "fn.json"
    template.write_text('{"Statement": [{"Resource": "${QueueArnTypo}"}]}')

    with pytest.raises(DeployError, match=r"QueueArnTypo.*TaskQueueArn"):
        render_policy(template, {"TaskQueueArn": "arn"})


def test_a_template_that_is_not_json_once_rendered_stops_the_deploy(tmp_path: Path) -> None:
    template = tmp_path / "fn.json"
    template.write_text('{"Statement": [${TaskQueueArn}]}')

    with pytest.raises(DeployError, match="not JSON"):
        render_policy(template, {"TaskQueueArn": "arn"})
