"""API Gateway usage plans on the running local cloud, for any REST API (here one with a MOCK
integration, no function): LocalStack's own key check (403), and the throttle the extension
adds (localcloud_ext.usage_plans: 429 over the plan's rate and burst, per key)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests


@dataclass
class MockApi:
    url: str
    api_id: str
    stage: str


@pytest.fixture
def mock_api(aws: Callable[[str], Any], local_cloud: dict[str, Any]) -> Iterator[MockApi]:
    """POST / answered by a MOCK integration, with an API key required."""
    apigateway = aws("apigateway")
    api = apigateway.create_rest_api(name=f"throttle-{uuid.uuid4().hex[:8]}")["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    method = {"restApiId": api, "resourceId": root, "httpMethod": "POST"}
    apigateway.put_method(**method, authorizationType="NONE", apiKeyRequired=True)
    apigateway.put_integration(
        **method, type="MOCK", requestTemplates={"application/json": '{"statusCode": 200}'}
    )
    apigateway.put_method_response(**method, statusCode="200")
    apigateway.put_integration_response(
        **method, statusCode="200", responseTemplates={"application/json": '{"ok": true}'}
    )
    apigateway.create_deployment(restApiId=api, stageName="s")
    try:
        yield MockApi(f"{local_cloud['localstack']['url']}/_aws/execute-api/{api}/s/", api, "s")
    finally:
        apigateway.delete_rest_api(restApiId=api)


@pytest.fixture
def plan_with_key(aws: Callable[[str], Any], mock_api: MockApi) -> Iterator[Callable[..., str]]:
    """plan_with_key(rate, burst, method_throttle=None) -> the value of a new key in a new plan
    bound to the mock API's stage."""
    apigateway = aws("apigateway")
    made: list[tuple[str, str]] = []

    def make(rate: float, burst: int, method_throttle: dict[str, Any] | None = None) -> str:
        stage: dict[str, Any] = {"apiId": mock_api.api_id, "stage": mock_api.stage}
        if method_throttle:
            stage["throttle"] = method_throttle
        plan = apigateway.create_usage_plan(
            name=f"plan-{uuid.uuid4().hex[:8]}",
            apiStages=[stage],
            throttle={"rateLimit": rate, "burstLimit": burst},
        )["id"]
        key = apigateway.create_api_key(name=f"key-{uuid.uuid4().hex[:8]}", enabled=True)
        apigateway.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
        made.append((plan, key["id"]))
        return str(key["value"])

    yield make
    for plan, key in made:
        apigateway.delete_usage_plan(usagePlanId=plan)
        apigateway.delete_api_key(apiKey=key)


def post(api: MockApi, key: str | None) -> int:
    headers = {"x-api-key": key} if key else {}
    return requests.post(api.url, json={}, headers=headers, timeout=10).status_code


def test_without_a_key_or_with_a_wrong_one_the_answer_is_403(
    mock_api: MockApi, plan_with_key: Callable[..., str]
) -> None:
    plan_with_key(100.0, 100)

    assert post(mock_api, None) == 403
    assert post(mock_api, "not-a-key") == 403


def test_past_the_burst_the_answer_is_429_until_the_bucket_refills(
    mock_api: MockApi, plan_with_key: Callable[..., str]
) -> None:
    key = plan_with_key(1.0, 2)

    first = [post(mock_api, key) for _ in range(4)]
    time.sleep(1.1)  # one token at 1/s; waiting on the emulated clock itself is the point
    after_a_second = post(mock_api, key)

    assert first[:2] == [200, 200] and first[2:] == [429, 429]
    assert after_a_second == 200
    response = requests.post(mock_api.url, json={}, headers={"x-api-key": key}, timeout=10)
    assert (response.status_code, response.json()) == (429, {"message": "Too Many Requests"})
    assert response.headers["x-amzn-ErrorType"] == "TooManyRequestsException"


def test_each_key_has_its_own_bucket(mock_api: MockApi, plan_with_key: Callable[..., str]) -> None:
    one, other = plan_with_key(1.0, 1), plan_with_key(1.0, 1)

    assert [post(mock_api, one), post(mock_api, one)] == [200, 429]
    assert post(mock_api, other) == 200


def test_a_stage_may_throttle_a_method_tighter_than_the_plan(
    mock_api: MockApi, plan_with_key: Callable[..., str]
) -> None:
    key = plan_with_key(100.0, 100, {"//POST": {"rateLimit": 1.0, "burstLimit": 1}})

    assert [post(mock_api, key) for _ in range(3)] == [200, 429, 429]


def test_a_limit_well_above_the_load_throttles_nothing(
    mock_api: MockApi, plan_with_key: Callable[..., str]
) -> None:
    key = plan_with_key(100.0, 200)

    assert {post(mock_api, key) for _ in range(30)} == {200}
