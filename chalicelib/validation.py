"""Request bodies of POST /tasks and POST /tasks/batch: parsed, checked, and turned into
TaskRequests, or rejected with the field that is wrong. Validation is all or nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import InvalidRequest, RequestTooLarge
from chalicelib.model import TaskRequest
from chalicelib.task_types import TASK_TYPES, validate_payload

# One task's JSON stays far below SQS's 256 KiB message limit, and ten of them (one
# SendMessageBatch) below its 256 KiB batch limit too.
MAX_TASK_BYTES = 16 * 1024
MAX_BATCH_TASKS = 100
MAX_BATCH_BYTES = MAX_BATCH_TASKS * MAX_TASK_BYTES
MAX_IDEMPOTENCY_KEY_LENGTH = 128
TASK_FIELDS = {"type", "payload", "idempotency_key"}


def _json_object(raw: str | bytes, limit: int) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > limit:
        raise RequestTooLarge(f"request body is {len(raw)} bytes; the limit is {limit} bytes")
    if not raw.strip():
        raise InvalidRequest("body", "empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequest("body", f"not valid JSON ({e})") from e
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"must be a JSON object, not {type(body).__name__}")
    return body


def _task(item: Mapping[str, Any], where: str) -> TaskRequest:
    for name in item:
        if name not in TASK_FIELDS:
            raise InvalidRequest(
                f"{where}{name}", f"unknown field (allowed: {', '.join(sorted(TASK_FIELDS))})"
            )
    task_type = item.get("type")
    if not isinstance(task_type, str) or task_type not in TASK_TYPES:
        raise InvalidRequest(f"{where}type", f"must be one of {', '.join(TASK_TYPES)}")
    payload = item.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidRequest(f"{where}payload", "must be a JSON object")
    validate_payload(task_type, payload, f"{where}payload")
    key: Any = item.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH
        or not key.isprintable()
    ):
        raise InvalidRequest(
            f"{where}idempotency_key",
            f"must be a printable string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    return TaskRequest(type=task_type, payload=payload, idempotency_key=key)


def parse_task(raw: str | bytes) -> TaskRequest:
    """The body of POST /tasks: {"type": ..., "payload": {...}, "idempotency_key": ...}."""
    return _task(_json_object(raw, MAX_TASK_BYTES), "")


def parse_batch(raw: str | bytes) -> list[TaskRequest]:
    """The body of POST /tasks/batch: {"tasks": [task, ...]}, 1 to 100 tasks."""
    body = _json_object(raw, MAX_BATCH_BYTES)
    for key in body:
        if key != "tasks":
            raise InvalidRequest(key, "unknown field (allowed: tasks)")
    items = body.get("tasks")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_TASKS:
        raise InvalidRequest("tasks", f"must be a list of 1 to {MAX_BATCH_TASKS} tasks")
    tasks: list[TaskRequest] = []
    seen_keys: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"tasks[{index}]."
        if not isinstance(item, dict):
            raise InvalidRequest(f"tasks[{index}]", "must be a JSON object")
        size = len(json.dumps(item, separators=(",", ":")).encode())
        if size > MAX_TASK_BYTES:
            raise RequestTooLarge(
                f"tasks[{index}] is {size} bytes; the limit per task is {MAX_TASK_BYTES} bytes"
            )
        task = _task(item, where)
        if task.idempotency_key is not None:
            if task.idempotency_key in seen_keys:
                raise InvalidRequest(
                    f"{where}idempotency_key",
                    f"repeats tasks[{seen_keys[task.idempotency_key]}].idempotency_key",
                )
            seen_keys[task.idempotency_key] = index
        tasks.append(task)
    return tasks
