"""Request bodies of POST /tasks and POST /tasks/batch: parsed, checked, and turned into
TaskRequests, or rejected with the field that is wrong. Validation is all or nothing."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from chalicelib.errors import InvalidRequest, RequestTooLarge
from chalicelib.model import TaskRequest
from chalicelib.task_types import TASK_TYPES, validate_payload

# One task's JSON stays far below SQS's 256 KiB message limit, and ten of them (one
# SendMessageBatch) below its 256 KiB batch limit too.
MAX_TASK_BYTES = 16 * 1024
MAX_BATCH_TASKS = 100
MAX_BATCH_BYTES = MAX_BATCH_TASKS * MAX_TASK_BYTES
MAX_IDEMPOTENCY_KEY_LENGTH = 128
# Deeper than any payload a task needs, far shallower than what overflows a parser's stack.
MAX_PAYLOAD_DEPTH = 32
TASK_FIELDS = {"type", "payload", "idempotency_key"}
# What a text or jsonb column refuses (U+0000; a lone surrogate, which Python's json lets
# through from a "\ud800" escape): refused here, before anything is stored.
UNSTORABLE_CHARACTERS = "U+0000 or a lone surrogate (U+D800 to U+DFFF)"


def _refuse_constant(name: str) -> NoReturn:
    # Python's json reads NaN, Infinity and -Infinity; JSON has no such values.
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: str | bytes, limit: int) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > limit:
        raise RequestTooLarge(f"request body is {len(raw)} bytes; the limit is {limit} bytes")
    if not raw.strip():
        raise InvalidRequest("body", "empty; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as e:
        raise InvalidRequest("body", "nested too deeply to be a task") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an int of > 4300 digits
        raise InvalidRequest("body", f"not valid JSON ({e})") from e
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"must be a JSON object, not {type(body).__name__}")
    return body


def _storable_string(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def _check_json_value(value: Any, where: str, depth: int = 0) -> None:
    """A payload is stored as jsonb and sent as JSON: every number finite, every string and
    key storable, nested at most MAX_PAYLOAD_DEPTH levels."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(where, "must be a finite number (this one overflows a double)")
    if isinstance(value, str) and not _storable_string(value):
        raise InvalidRequest(where, f"must not contain {UNSTORABLE_CHARACTERS}")
    if not isinstance(value, dict | list):
        return
    if depth >= MAX_PAYLOAD_DEPTH:
        raise InvalidRequest(where, f"nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    for key, item in value.items():
        if not _storable_string(key):
            raise InvalidRequest(where, f"a key must not contain {UNSTORABLE_CHARACTERS}")
        _check_json_value(item, f"{where}.{key}", depth + 1)


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
    _check_json_value(payload, f"{where}payload")
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
