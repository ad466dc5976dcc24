"""The OpenAPI document: valid OpenAPI 3.1, built from the task-type registry and validation's
limits, served by the app, and its error schema is what Chalice answers."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from chalice.test import Client
from openapi_spec_validator import validate

from chalicelib import openapi, validation
from chalicelib.task_types import TASK_TYPES
from tests.unit.test_app_routes import app_module, client, post  # noqa: F401 (fixtures)

ROUTES = {
    "/tasks": "post",
    "/tasks/batch": "post",
    "/tasks/{task_id}": "get",
    "/status": "get",
    "/health": "get",
    "/metrics": "get",
    "/whoami": "get",
    "/openapi.json": "get",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises OpenAPIValidationError naming what is wrong

    assert document["openapi"].startswith("3.1")


def test_every_route_is_described_with_its_method(document: dict[str, Any]) -> None:
    assert {path: next(iter(item)) for path, item in document["paths"].items()} == ROUTES


@pytest.mark.parametrize("name", list(TASK_TYPES))
def test_every_registered_type_is_a_branch_of_task(document: dict[str, Any], name: str) -> None:
    task = schemas(document)["Task"]
    branch = task["discriminator"]["mapping"][name].rsplit("/", 1)[-1]

    assert {"$ref": f"#/components/schemas/{branch}"} in task["oneOf"]
    described = schemas(document)[branch]
    assert described["properties"]["type"] == {"const": name}
    assert described["properties"]["payload"] == TASK_TYPES[name].payload_schema()
    assert described["additionalProperties"] is False


def test_the_types_are_exactly_the_registry(document: dict[str, Any]) -> None:
    task = schemas(document)["Task"]

    assert list(task["discriminator"]["mapping"]) == list(TASK_TYPES)
    assert len(task["oneOf"]) == len(TASK_TYPES)


def test_the_limits_are_validations(document: dict[str, Any]) -> None:
    tasks = schemas(document)["Batch"]["properties"]["tasks"]
    key = schemas(document)["IdempotencyKey"]

    assert (tasks["minItems"], tasks["maxItems"]) == (1, validation.MAX_BATCH_TASKS)
    assert key["maxLength"] == validation.MAX_IDEMPOTENCY_KEY_LENGTH
    assert str(validation.MAX_TASK_BYTES) in schemas(document)["Task"]["description"]
    assert schemas(document)["Batch"]["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/tasks", "/tasks/batch"])
def test_the_write_routes_answer_202_and_every_client_error(
    document: dict[str, Any], path: str
) -> None:
    responses = document["paths"][path]["post"]["responses"]

    assert set(responses) == {"202", "400", "403", "409", "413", "415", "429", "503"}
    error = responses["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    # API Gateway's own answers: the key (x-api-key) and the usage plan's limits.
    gateway = responses["429"]["content"]["application/json"]["schema"]
    assert gateway == {"$ref": "#/components/schemas/GatewayError"}
    assert "x-api-key" in responses["403"]["description"]


def test_the_app_serves_the_document(client: Client, document: dict[str, Any]) -> None:  # noqa: F811
    response = client.http.get("/openapi.json")

    assert response.status_code == 200
    assert json.loads(response.body) == document


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/tasks", b"{nope", 400),
        ("/tasks", {"type": "echo", "payload": {"x": "y" * validation.MAX_TASK_BYTES}}, 413),
        ("/tasks/batch", {"tasks": []}, 400),
    ],
)
def test_an_error_body_matches_the_error_schema(
    client: Client,  # noqa: F811
    document: dict[str, Any],
    path: str,
    body: Any,
    status: int,
) -> None:
    response = post(client, path, body)

    assert response.status_code == status
    jsonschema.validate(json.loads(response.body), schemas(document)["Error"])


def test_a_request_that_is_not_json_is_a_415_in_the_error_schema(
    client: Client,  # noqa: F811
    document: dict[str, Any],
) -> None:
    response = client.http.post("/tasks", headers={"Content-Type": "text/plain"}, body=b"{}")

    assert response.status_code == 415
    jsonschema.validate(json.loads(response.body), schemas(document)["Error"])
