"""The API described as OpenAPI 3.1, built from the task-type registry and validation's limits,
so the document says what the code checks: a new task type or a changed bound shows here with
no edit. Served at GET /openapi.json; the fuzz tests generate their requests from it."""

from __future__ import annotations

from typing import Any

from chalicelib import validation
from chalicelib.dashboard import DEFAULT_MINUTES, MAX_MINUTES, PERIODS
from chalicelib.task_types import TASK_TYPES, JsonSchema, TaskType

OPENAPI_VERSION = "3.1.0"
ERROR_STATUSES = {
    "400": "The request is malformed; the message names the field (`payload.ms: ...`).",
    "404": "No such task.",
    "409": "The idempotency key was used before for another task.",
    "413": "The body, or one task of a batch, is over its byte limit.",
    "415": "The body is not JSON (Content-Type other than application/json).",
    "503": "SQS or PostgreSQL did not answer, or the request could not finish in its time; "
    "nothing of it was kept: retry with the same idempotency keys.",
}
# Answered by API Gateway itself, before the app sees the request (body {"message": ...}). The
# key is not declared as a security scheme: a fuzzer would then send requests without it as
# its "negative" cases, valid bodies the gateway lets through with the key the tests add.
GATEWAY_STATUSES = {
    "403": "No API key, or a wrong one (x-api-key).",
    "429": "Over the usage plan's rate or burst limit: retry later.",
}

SUBMIT_ERRORS = ("400", "409", "413", "415", "503")
# Python's str.isprintable() is what validation checks; JSON Schema's regex cannot say all of
# it (Unicode categories), so the pattern refuses the control characters and the description
# says the rest.
PRINTABLE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema_name(task_type: TaskType) -> str:
    return f"{task_type.name.capitalize()}Task"


def task_schema(task_type: TaskType) -> JsonSchema:
    """One task of this type, as POST /tasks takes it."""
    payload = task_type.payload_schema()
    schema: JsonSchema = {
        "type": "object",
        "description": task_type.description,
        "properties": {
            "type": {"const": task_type.name},
            "payload": payload,
            "idempotency_key": _ref("IdempotencyKey"),
        },
        "required": ["type"],
        "additionalProperties": False,
    }
    # An absent payload is {}: required only when {} would not do.
    if payload.get("required"):
        schema["required"] = ["type", "payload"]
    return schema


def _schemas() -> dict[str, JsonSchema]:
    per_type = {_schema_name(t): task_schema(t) for t in TASK_TYPES.values()}
    limits = (
        f"At most {validation.MAX_TASK_BYTES} bytes of JSON per task; a payload nests at most "
        f"{validation.MAX_PAYLOAD_DEPTH} levels, its numbers are finite and its strings hold "
        f"no {validation.UNSTORABLE_CHARACTERS}."
    )
    return {
        **per_type,
        "Task": {
            "description": f"A task, by its type. {limits}",
            "oneOf": [_ref(name) for name in per_type],
            "discriminator": {
                "propertyName": "type",
                "mapping": {
                    t.name: f"#/components/schemas/{_schema_name(t)}" for t in TASK_TYPES.values()
                },
            },
        },
        "Batch": {
            "type": "object",
            "description": (
                f"1 to {validation.MAX_BATCH_TASKS} tasks, all valid or none kept; idempotency "
                f"keys unique within the batch; at most {validation.MAX_BATCH_BYTES} bytes."
            ),
            "properties": {
                "tasks": {
                    "type": "array",
                    "items": _ref("Task"),
                    "minItems": 1,
                    "maxItems": validation.MAX_BATCH_TASKS,
                }
            },
            "required": ["tasks"],
            "additionalProperties": False,
        },
        "IdempotencyKey": {
            # null is no key, as is an absent one
            "type": ["string", "null"],
            "description": "Printable: no control characters, no separator but the space.",
            "minLength": 1,
            "maxLength": validation.MAX_IDEMPOTENCY_KEY_LENGTH,
            "pattern": PRINTABLE_PATTERN,
        },
        **_response_schemas(),
    }


def _response_schemas() -> dict[str, JsonSchema]:
    submission = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "outcome": {"enum": ["accepted", "duplicate", "conflict"]},
            "status": {"type": "string"},
            "status_path": {"type": "string"},
        },
        "required": ["id", "outcome", "status", "status_path"],
    }
    return {
        "Error": {
            "type": "object",
            "description": "Chalice's error body.",
            "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}},
            "required": ["Code", "Message"],
        },
        "Submission": submission,
        "BatchSubmission": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": _ref("Submission")},
            },
            "required": ["accepted", "results"],
        },
        "TaskRow": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "type": {"type": "string"},
                "status": {"enum": ["queued", "running", "retrying", "done", "failed"]},
                "attempts": {"type": "integer"},
            },
            "required": ["id", "type", "status", "attempts"],
        },
    }


def _json(schema: JsonSchema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: _json(_ref("Error"), ERROR_STATUSES[status]) for status in statuses}


def _submit(schema: str, accepted: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(schema)}},
            },
            "responses": {
                "202": _json(_ref(accepted), "Stored and enqueued."),
                **_errors(*SUBMIT_ERRORS),
                **{
                    status: _json(_ref("GatewayError"), description)
                    for status, description in GATEWAY_STATUSES.items()
                },
            },
        }
    }


def _read(
    summary: str,
    description: str,
    errors: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses = {"200": _json({"type": "object"}, description), **(errors or {})}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _metrics_window() -> list[dict[str, Any]]:
    return [
        {
            "name": "minutes",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_MINUTES,
                "default": DEFAULT_MINUTES,
            },
        },
        {"name": "period", "in": "query", "schema": {"enum": list(PERIODS), "default": 1}},
    ]


def _paths() -> dict[str, Any]:
    task_id = {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    return {
        "/tasks": _submit("Task", "Submission", "Submit one task."),
        "/tasks/batch": _submit(
            "Batch", "BatchSubmission", f"Submit 1 to {validation.MAX_BATCH_TASKS} tasks at once."
        ),
        "/tasks/{task_id}": {
            "get": {
                "summary": "One task's row.",
                "parameters": [task_id],
                "responses": {
                    "200": _json(_ref("TaskRow"), "The task."),
                    **_errors("400", "404", "503"),
                },
            }
        },
        "/status": _read("Queue depths and tasks by status.", "The status.", _errors("503")),
        "/metrics": _read(
            "The dashboard's data.", "Every series.", _errors("400", "503"), _metrics_window()
        ),
        "/health": _read(
            "Whether SQS and PostgreSQL answer.",
            "Both answer.",
            {"503": _json({"type": "object"}, "One did not.")},
        ),
        "/whoami": _read("Which execution environment answered.", "The environment."),
        "/openapi.json": _read("This document.", "OpenAPI 3.1."),
    }


def document() -> dict[str, Any]:
    """The OpenAPI document of the API; `servers` is left to the client (the API's URL)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "serverless-scaling",
            "version": "1",
            "description": "Tasks in through API Gateway, through SQS, to PostgreSQL.",
        },
        "paths": _paths(),
        "components": {
            "schemas": {
                **_schemas(),
                "GatewayError": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                },
            },
        },
    }
