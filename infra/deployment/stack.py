"""The app's CloudFormation stack (infra/cloudformation/serverless-scaling.yaml): create or
update it idempotently, delete it, read its outputs.

Every function takes a boto3 CloudFormation client, so the same code deploys to LocalStack, to
AWS, and to moto in the unit tests. Waiting polls DescribeStacks; it never sleeps a fixed time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "infra" / "cloudformation" / "serverless-scaling.yaml"

# Settled states in which a stack holds working resources and accepts an update.
USABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}
# Where a create or update we started must end; anything else settled is a failure.
SUCCEEDED = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
# What a failed first create leaves: AWS rolls back to an empty ROLLBACK_COMPLETE stack,
# LocalStack stops at CREATE_FAILED. Neither can be updated; deleting and creating again can.
FAILED_CREATE = {"ROLLBACK_COMPLETE", "CREATE_FAILED"}
# The stack-level events that open an operation: failure events older than these are history.
OPERATION_STARTS = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"}


class StackError(RuntimeError):
    """A stack operation failed; the message says what, why, and what to do."""


def stack_name(stage: str) -> str:
    return f"serverless-scaling-{stage}"


def deploy_stack(
    cloudformation: Any,
    name: str,
    template_body: str,
    parameters: dict[str, str],
    *,
    poll_seconds: float = 0.5,
    timeout_seconds: float = 300,
) -> dict[str, str]:
    """Create stack ``name``, or update it when its template or parameters differ; return its
    outputs as {OutputKey: OutputValue}. Deploying the same inputs again changes nothing."""
    stack = _wait_settled(cloudformation, name, poll_seconds, timeout_seconds)
    if stack is not None and stack["StackStatus"] in FAILED_CREATE:
        logger.info("stack %s: deleting what a failed create left (%s)", name, stack["StackStatus"])
        delete_stack(
            cloudformation, name, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds
        )
        stack = None
    fix = f"fix the template ({TEMPLATE_PATH.name}) or the parameter it names and deploy again"
    request = {
        "StackName": name,
        "TemplateBody": template_body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    }
    if stack is None:
        logger.info("stack %s: creating", name)
        _call(f"creating stack {name}", fix, cloudformation.create_stack, **request)
    elif stack["StackStatus"] not in USABLE:
        raise StackError(
            f"stack {name} is in {stack['StackStatus']} ({stack.get('StackStatusReason', '')}) "
            "and cannot be updated: repair it (e.g. continue-update-rollback) or delete it "
            "with delete_stack, then deploy again"
        )
    elif _is_current(cloudformation, stack, template_body, parameters):
        logger.info("stack %s: up to date, nothing to do", name)
        return _outputs(stack)
    else:
        logger.info("stack %s: updating", name)
        _call(f"updating stack {name}", fix, cloudformation.update_stack, **request)
    stack = _wait_settled(cloudformation, name, poll_seconds, timeout_seconds)
    if stack is None or stack["StackStatus"] not in SUCCEEDED:
        status = "gone" if stack is None else stack["StackStatus"]
        reasons = _failure_reasons(cloudformation, name)
        raise StackError(f"deploying stack {name} failed ({status}): {reasons}; {fix}")
    logger.info("stack %s: %s", name, stack["StackStatus"])
    return _outputs(stack)


def delete_stack(
    cloudformation: Any, name: str, *, poll_seconds: float = 0.5, timeout_seconds: float = 300
) -> None:
    """Delete stack ``name`` and wait until it is gone; a missing stack is fine."""
    if _describe(cloudformation, name) is None:
        return
    logger.info("stack %s: deleting", name)
    _call(f"deleting stack {name}", "retry", cloudformation.delete_stack, StackName=name)
    stack = _wait_settled(cloudformation, name, poll_seconds, timeout_seconds)
    if stack is not None:
        reasons = _failure_reasons(cloudformation, name)
        raise StackError(
            f"deleting stack {name} failed ({stack['StackStatus']}): {reasons}; empty or remove "
            "the resources named there (e.g. a non-empty bucket), then delete again"
        )


def stack_outputs(cloudformation: Any, name: str) -> dict[str, str]:
    stack = _describe(cloudformation, name)
    if stack is None:
        raise StackError(f"stack {name} does not exist: deploy it first")
    return _outputs(stack)


def _call(what: str, fix: str, operation: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return operation(**kwargs)
    except (BotoCoreError, ClientError) as e:
        raise StackError(f"{what} failed: {e}; {fix}") from e


def _describe(cloudformation: Any, name: str) -> dict[str, Any] | None:
    """The stack, or None when there is none. DescribeStacks reports a missing stack as a
    ValidationError, which is what botocore's own stack_delete_complete waiter takes as gone."""
    try:
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ValidationError":
            return None
        raise StackError(f"describing stack {name} failed: {e}; check the endpoint") from e
    except BotoCoreError as e:
        raise StackError(f"describing stack {name} failed: {e}; check the endpoint") from e
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack


def _wait_settled(
    cloudformation: Any, name: str, poll_seconds: float, timeout_seconds: float
) -> dict[str, Any] | None:
    """Poll until the stack is in no *_IN_PROGRESS state (or gone); return it."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        stack = _describe(cloudformation, name)
        # REVIEW_IN_PROGRESS (a change set never executed) does not move on by itself.
        status = "" if stack is None else stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or status == "REVIEW_IN_PROGRESS":
            return stack
        if time.monotonic() >= deadline:
            raise StackError(
                f"stack {name} still {status} after {timeout_seconds:.0f} s: see its events "
                "(describe-stack-events), then deploy again with a longer timeout_seconds"
            )
        time.sleep(poll_seconds)


def _is_current(
    cloudformation: Any, stack: dict[str, Any], template_body: str, parameters: dict[str, str]
) -> bool:
    """Whether the stack already runs this template with these parameters. Compared here, since
    CloudFormation answers a no-op update with an error told apart only by its message."""
    name = stack["StackName"]
    deployed = _call(
        f"reading the template of stack {name}",
        "check the endpoint",
        cloudformation.get_template,
        StackName=name,
        TemplateStage="Original",
    )["TemplateBody"]
    # boto3 hands back a JSON template already parsed, a YAML one as text.
    if isinstance(deployed, str):
        if deployed != template_body:
            return False
    elif deployed != _json_or_none(template_body):
        return False
    # A parameter left out of an update takes its default, so that is what to compare with.
    summary = _call(
        "reading the template's parameters",
        "check the template",
        cloudformation.get_template_summary,
        TemplateBody=template_body,
    )
    desired = {
        p["ParameterKey"]: str(p["DefaultValue"])
        for p in summary.get("Parameters", [])
        if p.get("DefaultValue") is not None
    }
    desired.update(parameters)
    current = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    return current == desired


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _failure_reasons(cloudformation: Any, name: str) -> str:
    """The ResourceStatusReason of each resource that failed in the stack's latest operation."""
    try:
        # Newest first; the first page (100 events) covers an operation of this small stack.
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
    except (BotoCoreError, ClientError) as e:
        return f"(its events could not be read: {e})"
    reasons: list[str] = []
    for event in events:
        is_stack = event["ResourceType"] == "AWS::CloudFormation::Stack"
        if is_stack and event["ResourceStatus"] in OPERATION_STARTS:
            break
        if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason"):
            reasons.append(f"{event['LogicalResourceId']}: {event['ResourceStatusReason']}")
    return "; ".join(reversed(reasons)) or "no failed resource reported a reason"
