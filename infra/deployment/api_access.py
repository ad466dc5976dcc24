"""Who may call the API's write routes: an API Gateway API key in a usage plan bound to the
stage, with a rate and burst limit. The routes ask for it (`api_key_required=True` in app.py);
API Gateway answers 403 without a valid key and 429 over the plan's limit, before the function
runs. Created idempotently: a redeploy finds the key and plan by name and reuses them.

Every function takes a boto3 API Gateway client, so the same code runs against the local
cloud, AWS, and moto."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throttle:
    rate_per_second: float  # the bucket's refill rate (API Gateway's rateLimit)
    burst: int  # requests at once (burstLimit)


# The write routes' limit per API key, the one place it is set. The burst tool's normal runs
# send at most ~1,000 tasks/s in batches of 100 (10-40 requests/s, a spike's 40-100 at once):
# well inside, so only a runaway client is throttled. On AWS the account's own limit
# (10,000/s, burst 5,000) sits above it.
WRITE_ROUTES_THROTTLE = Throttle(rate_per_second=100.0, burst=200)


@dataclass(frozen=True)
class ApiAccess:
    name: str  # of the key and of the usage plan
    api_key_id: str
    api_key: str  # the value clients send as x-api-key
    usage_plan_id: str
    throttle: Throttle


class ApiAccessError(RuntimeError):
    """The key or the usage plan could not be set up; the message says what to fix."""


def access_name(app_name: str, stage: str) -> str:
    return f"{app_name}-{stage}-writes"


def ensure_api_access(
    apigateway: Any,
    name: str,
    rest_api_id: str,
    api_stage: str,
    throttle: Throttle = WRITE_ROUTES_THROTTLE,
) -> ApiAccess:
    """The key `name` and the usage plan `name`, bound to `rest_api_id`/`api_stage` with
    `throttle`: created when missing, corrected when they differ, else left as they are."""
    if throttle.rate_per_second <= 0 or throttle.burst < 1:
        raise ApiAccessError(
            f"throttle {throttle}: the rate must be > 0 requests/s and the burst >= 1; fix "
            "WRITE_ROUTES_THROTTLE in infra/deployment/api_access.py"
        )
    key = _ensure_key(apigateway, name)
    plan = _ensure_plan(apigateway, name, rest_api_id, api_stage, throttle)
    keys_in_plan = {k["id"] for k in _pages(apigateway.get_usage_plan_keys, usagePlanId=plan["id"])}
    if key["id"] not in keys_in_plan:
        apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return ApiAccess(name, key["id"], key["value"], plan["id"], throttle)


def remove_api_access(apigateway: Any, name: str) -> None:
    """Delete the usage plan and key `name` (a plan must lose its stages before it goes)."""
    for plan in _named(_pages(apigateway.get_usage_plans), name):
        stages = [f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])]
        if stages:
            with contextlib.suppress(apigateway.exceptions.NotFoundException):  # API gone
                apigateway.update_usage_plan(
                    usagePlanId=plan["id"],
                    patchOperations=[
                        {"op": "remove", "path": "/apiStages", "value": s} for s in stages
                    ],
                )
        apigateway.delete_usage_plan(usagePlanId=plan["id"])
    for key in _named(_pages(apigateway.get_api_keys, nameQuery=name), name):
        apigateway.delete_api_key(apiKey=key["id"])


def _ensure_key(apigateway: Any, name: str) -> dict[str, Any]:
    found = _named(_pages(apigateway.get_api_keys, nameQuery=name, includeValues=True), name)
    if len(found) > 1:
        raise ApiAccessError(
            f"{len(found)} API keys are named {name!r}: delete all but one "
            "(aws apigateway get-api-keys / delete-api-key), then deploy again"
        )
    if found:
        key = found[0]
        if not key.get("enabled"):
            apigateway.update_api_key(
                apiKey=key["id"],
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}],
            )
        return key
    logger.info("creating API key %s", name)
    created: dict[str, Any] = apigateway.create_api_key(
        name=name, enabled=True, description="the write routes' key (POST /tasks, /tasks/batch)"
    )
    return created


def _ensure_plan(
    apigateway: Any, name: str, rest_api_id: str, api_stage: str, throttle: Throttle
) -> dict[str, Any]:
    wanted = {"rateLimit": throttle.rate_per_second, "burstLimit": throttle.burst}
    found = _named(_pages(apigateway.get_usage_plans), name)
    if not found:
        logger.info("creating usage plan %s (%s)", name, wanted)
        plan: dict[str, Any] = apigateway.create_usage_plan(
            name=name,
            description="the write routes' limit per key",
            apiStages=[{"apiId": rest_api_id, "stage": api_stage}],
            throttle=wanted,
        )
        return plan
    plan = found[0]
    operations = _plan_corrections(plan, rest_api_id, api_stage, throttle)
    if not operations:
        return plan
    logger.info("usage plan %s: %s", name, operations)
    try:
        updated: dict[str, Any] = apigateway.update_usage_plan(
            usagePlanId=plan["id"], patchOperations=operations
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        # A binding to a REST API deleted since cannot be removed (the local cloud refuses):
        # the plan holds nothing else worth keeping, so it is made again.
        logger.info("usage plan %s names a deleted API: making it again", name)
        apigateway.delete_usage_plan(usagePlanId=plan["id"])
        return _ensure_plan(apigateway, name, rest_api_id, api_stage, throttle)
    return updated


def _plan_corrections(
    plan: dict[str, Any], rest_api_id: str, api_stage: str, throttle: Throttle
) -> list[dict[str, str]]:
    """What turns `plan` into one bound to this stage only (a REST API recreated by an earlier
    deploy leaves a stale binding) with this throttle."""
    wanted_stage = f"{rest_api_id}:{api_stage}"
    bound = {f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])}
    operations = [
        {"op": "remove", "path": "/apiStages", "value": stale}
        for stale in sorted(bound - {wanted_stage})
    ]
    if wanted_stage not in bound:
        operations.append({"op": "add", "path": "/apiStages", "value": wanted_stage})
    current = plan.get("throttle") or {}
    if float(current.get("rateLimit", -1)) != throttle.rate_per_second:
        operations.append(
            {
                "op": "replace",
                "path": "/throttle/rateLimit",
                "value": f"{throttle.rate_per_second:g}",
            }
        )
    if int(current.get("burstLimit", -1)) != throttle.burst:
        operations.append(
            {"op": "replace", "path": "/throttle/burstLimit", "value": str(throttle.burst)}
        )
    return operations


def _named(items: Iterator[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [item for item in items if item.get("name") == name]


def _pages(operation: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paged API Gateway listing (`position` marks the next page)."""
    while True:
        page = operation(**kwargs)
        yield from page.get("items", [])
        if not page.get("position"):
            return
        kwargs["position"] = page["position"]
