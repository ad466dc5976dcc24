"""IAM for the least-privilege tests, where moto cannot: what authorization request each AWS
call makes, and whether an identity policy allows it.

moto 5 enforces IAM (`INITIAL_NO_AUTH_ACTION_COUNT`) on actions, but names the resource only for
SQS (the queue's ARN) and S3; for every other service it asks about `*`, so a statement scoped
to a secret's or a function's ARN is never matched, and it evaluates no condition key a
request carries (`cloudwatch:namespace`, `lambda:FunctionArn`). This module evaluates those
parts itself, as AWS's policy evaluation logic documents them for identity policies:
an explicit Deny wins, else an Allow whose Action, Resource and every Condition match, else
denied. Wildcards `*` and `?`; actions match case-insensitively, ARNs case-sensitively; a
condition on a key the request lacks does not match (no ...IfExists operators here).

The authorization requests follow AWS's Service Authorization Reference: SendMessageBatch is
authorized as sqs:SendMessage (DeleteMessageBatch, ChangeMessageVisibilityBatch likewise);
PutMetricData carries `cloudwatch:namespace`; GetMetricData and ListEventSourceMappings take no
resource; GetEventSourceMapping names the mapping and carries `lambda:FunctionArn`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """One authorization request: an action on a resource, with its condition context."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _glob(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    regex = fnmatch.translate(pattern)  # * and ? only: IAM has no [...] classes
    return re.match(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


CONDITION_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": lambda expected, actual: _glob(expected, actual),
    "ArnEquals": lambda expected, actual: expected == actual,
    "ArnLike": lambda expected, actual: _glob(expected, actual),
}


def _conditions_hold(
    conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]
) -> bool:
    for operator, keys in conditions.items():
        if operator not in CONDITION_OPERATORS:
            raise NotImplementedError(f"condition operator {operator} is not evaluated here")
        test = CONDITION_OPERATORS[operator]
        for key, expected in keys.items():
            actual = context.get(key)
            if actual is None or not any(test(e, actual) for e in _as_list(expected)):
                return False
    return True


def names_anyone(principal: Any) -> bool:
    """Whether a resource policy's Principal is everyone, anonymous callers included."""
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS", []))


def statement_matches(
    statement: Mapping[str, Any], request: Request, anonymous: bool = False
) -> bool:
    """For an identity policy; with `anonymous`, for a resource policy and a caller who signed
    nothing (only statements whose Principal is everyone apply)."""
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise NotImplementedError(f"{unsupported} is not evaluated here")
    if anonymous and not names_anyone(statement.get("Principal")):
        return False
    if not anonymous and "Principal" in statement:
        raise NotImplementedError("a Principal belongs in a resource policy: pass anonymous")
    actions = _as_list(statement["Action"])
    resources = _as_list(statement["Resource"])
    return (
        any(_glob(a, request.action, case_sensitive=False) for a in actions)
        and any(_glob(r, request.resource) for r in resources)
        and _conditions_hold(statement.get("Condition", {}), request.context)
    )


def is_allowed(policy: Mapping[str, Any], request: Request, anonymous: bool = False) -> bool:
    statements = policy["Statement"]
    matching = [s for s in statements if statement_matches(s, request, anonymous)]
    if any(s["Effect"] == "Deny" for s in matching):
        return False
    return any(s["Effect"] == "Allow" for s in matching)


# --- from a boto3 call to its authorization request ----------------------------------------

AUTHORIZED_AS = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}
IAM_PREFIX = {
    "sqs": "sqs",
    "secretsmanager": "secretsmanager",
    "cloudwatch": "cloudwatch",
    "lambda": "lambda",
    "logs": "logs",
}


@dataclass(frozen=True)
class Call:
    """One AWS call as botocore made it (service, operation, parameters)."""

    service: str
    operation: str
    params: Mapping[str, Any]


def queue_arn(queue_url: str, region: str) -> str:
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{region}:{account}:{name}"


def authorization_request(
    call: Call, region: str, account: str, mapping_functions: Mapping[str, str]
) -> Request:
    """What AWS authorizes for `call` (see the module's docstring for the sources);
    `mapping_functions`: each event source mapping's function ARN (its lambda:FunctionArn)."""
    operation = AUTHORIZED_AS.get((call.service, call.operation), call.operation)
    action = f"{IAM_PREFIX[call.service]}:{operation}"
    p = call.params
    if call.service == "sqs":
        return Request(action, queue_arn(p["QueueUrl"], region))
    if call.service == "secretsmanager":
        return Request(action, p["SecretId"])  # the functions are given the secret's ARN
    if call.service == "cloudwatch":
        context = {"cloudwatch:namespace": p["Namespace"]} if "Namespace" in p else {}
        return Request(action, "*", context)
    if call.service == "lambda":
        prefix = f"arn:aws:lambda:{region}:{account}"
        if call.operation == "ListEventSourceMappings":
            return Request(action, "*")
        if call.operation == "GetEventSourceMapping":
            uuid = p["UUID"]
            context = {"lambda:FunctionArn": mapping_functions[uuid]}
            return Request(action, f"{prefix}:event-source-mapping:{uuid}", context)
        name = p["FunctionName"]
        return Request(action, name if name.startswith("arn:") else f"{prefix}:function:{name}")
    if call.service == "logs":
        group = f"arn:aws:logs:{region}:{account}:log-group:{p['logGroupName']}"
        stream = p.get("logStreamName")
        return Request(action, f"{group}:log-stream:{stream}" if stream else f"{group}:*")
    raise NotImplementedError(f"no authorization mapping for {call.service}.{call.operation}")
