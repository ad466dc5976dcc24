"""The write routes' API key and usage plan (deployment/api_access.py), on moto's API Gateway:
made once, found again by name, corrected when the limit or the binding differs, removed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployment import api_access
from deployment.api_access import ApiAccessError, Throttle

NAME = "serverless-scaling-unit-writes"


@pytest.fixture
def apigateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client(
            "apigateway",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def rest_api(apigateway: Any, stage: str = "api") -> str:
    api: str = apigateway.create_rest_api(name="app")["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    apigateway.put_method(
        restApiId=api, resourceId=root, httpMethod="POST", authorizationType="NONE"
    )
    apigateway.put_integration(restApiId=api, resourceId=root, httpMethod="POST", type="MOCK")
    apigateway.create_deployment(restApiId=api, stageName=stage)
    return api


def test_the_key_and_plan_are_made_with_the_stage_and_the_limit(apigateway: Any) -> None:
    api = rest_api(apigateway)

    access = api_access.ensure_api_access(apigateway, NAME, api, "api")

    plan = apigateway.get_usage_plan(usagePlanId=access.usage_plan_id)
    assert plan["apiStages"] == [{"apiId": api, "stage": "api"}]
    assert plan["throttle"] == {"rateLimit": 100.0, "burstLimit": 200}
    keys = apigateway.get_usage_plan_keys(usagePlanId=access.usage_plan_id)["items"]
    assert [k["id"] for k in keys] == [access.api_key_id]
    key = apigateway.get_api_key(apiKey=access.api_key_id, includeValue=True)
    assert key["value"] == access.api_key and key["enabled"]


def test_a_redeploy_reuses_the_key_and_the_plan(apigateway: Any) -> None:
    api = rest_api(apigateway)
    first = api_access.ensure_api_access(apigateway, NAME, api, "api")

    again = api_access.ensure_api_access(apigateway, NAME, api, "api")

    assert again == first
    assert len(apigateway.get_usage_plans()["items"]) == 1
    assert len(apigateway.get_api_keys()["items"]) == 1


def test_a_plan_bound_elsewhere_or_limited_otherwise_is_corrected() -> None:
    plan = {
        "apiStages": [{"apiId": "old", "stage": "api"}],
        "throttle": {"rateLimit": 1.0, "burstLimit": 2},
    }

    operations = api_access._plan_corrections(plan, "new", "api", Throttle(100.0, 200))

    assert operations == [
        {"op": "remove", "path": "/apiStages", "value": "old:api"},
        {"op": "add", "path": "/apiStages", "value": "new:api"},
        {"op": "replace", "path": "/throttle/rateLimit", "value": "100"},
        {"op": "replace", "path": "/throttle/burstLimit", "value": "200"},
    ]
    current = {
        "apiStages": [{"apiId": "new", "stage": "api"}],
        "throttle": {"rateLimit": 100.0, "burstLimit": 200},
    }
    assert api_access._plan_corrections(current, "new", "api", Throttle(100.0, 200)) == []


def test_remove_deletes_the_plan_and_the_key(apigateway: Any) -> None:
    api = rest_api(apigateway)
    api_access.ensure_api_access(apigateway, NAME, api, "api")
    other = api_access.ensure_api_access(apigateway, "someone-elses", api, "api")

    api_access.remove_api_access(apigateway, NAME)
    api_access.remove_api_access(apigateway, NAME)  # idempotent

    assert [p["id"] for p in apigateway.get_usage_plans()["items"]] == [other.usage_plan_id]
    assert [k["id"] for k in apigateway.get_api_keys()["items"]] == [other.api_key_id]


@pytest.mark.parametrize("throttle", [Throttle(0.0, 10), Throttle(10.0, 0)])
def test_a_limit_that_lets_nothing_through_stops_the_deploy(
    apigateway: Any, throttle: Throttle
) -> None:
    with pytest.raises(ApiAccessError, match="WRITE_ROUTES_THROTTLE"):
        api_access.ensure_api_access(apigateway, NAME, "api-id", "api", throttle)


def test_the_deploys_limit_is_above_the_burst_tools_normal_runs() -> None:
    """~1,000 tasks/s in batches of 100 is 10 requests/s, a 4,000-task spike 40 at once."""
    assert api_access.WRITE_ROUTES_THROTTLE.rate_per_second >= 40
    assert api_access.WRITE_ROUTES_THROTTLE.burst >= 100
