"""Request bodies: what POST /tasks and POST /tasks/batch accept, and the field named when not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.errors import InvalidRequest, RequestTooLarge
from chalicelib.model import TaskRequest
from chalicelib.validation import MAX_BATCH_TASKS, MAX_TASK_BYTES, parse_batch, parse_task


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_valid_task_is_parsed() -> None:
    parsed = parse_task(body({"type": "sleep", "payload": {"ms": 10}, "idempotency_key": "k1"}))

    assert parsed == TaskRequest("sleep", {"ms": 10}, "k1")


def test_payload_defaults_to_an_empty_object() -> None:
    assert parse_task(body({"type": "echo"})) == TaskRequest("echo", {}, None)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (body({"payload": {}}), "type"),
        (body({"type": "teleport"}), "type"),
        (body({"type": 7}), "type"),
        (body({"type": "echo", "payload": [1]}), "payload"),
        (body({"type": "echo", "extra": 1}), "extra"),
        (body({"type": "sleep", "payload": {}}), "payload.ms"),
        (body({"type": "sleep", "payload": {"ms": 5001}}), "payload.ms"),
        (body({"type": "sleep", "payload": {"ms": True}}), "payload.ms"),
        (body({"type": "sleep", "payload": {"ms": 1, "x": 2}}), "payload.x"),
        (body({"type": "cpu", "payload": {"rounds": 0}}), "payload.rounds"),
        (body({"type": "fail", "payload": {"reason": 3}}), "payload.reason"),
        (body({"type": "flaky", "payload": {"failure_rate": 1.5}}), "payload.failure_rate"),
        (body({"type": "echo", "idempotency_key": ""}), "idempotency_key"),
        (body({"type": "echo", "idempotency_key": "a\nb"}), "idempotency_key"),
        (body({"type": "echo", "idempotency_key": "k" * 129}), "idempotency_key"),
    ],
)
def test_a_bad_task_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_task(raw)

    assert error.value.field == field


def test_an_oversize_task_is_too_large() -> None:
    with pytest.raises(RequestTooLarge, match=str(MAX_TASK_BYTES)):
        parse_task(body({"type": "echo", "payload": {"blob": "x" * MAX_TASK_BYTES}}))


def test_a_batch_is_parsed_in_order() -> None:
    tasks = [{"type": "echo", "payload": {"i": i}} for i in range(MAX_BATCH_TASKS)]

    parsed = parse_batch(body({"tasks": tasks}))

    assert [t.payload["i"] for t in parsed] == list(range(MAX_BATCH_TASKS))


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"tasks": [{"type": "echo"}] * (MAX_BATCH_TASKS + 1)}, "tasks"),
        ({"tasks": [{"type": "echo"}], "more": 1}, "more"),
        ({"tasks": [{"type": "echo"}, 5]}, "tasks[1]"),
        (
            {"tasks": [{"type": "echo"}, {"type": "sleep", "payload": {"ms": -1}}]},
            "tasks[1].payload.ms",
        ),
        (
            {
                "tasks": [
                    {"type": "echo", "idempotency_key": "a"},
                    {"type": "echo", "idempotency_key": "a"},
                ]
            },
            "tasks[1].idempotency_key",
        ),
    ],
)
def test_one_bad_item_rejects_the_whole_batch(value: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_batch(body(value))

    assert error.value.field == field


def test_an_oversize_batch_item_is_too_large() -> None:
    big = {"type": "echo", "payload": {"blob": "x" * MAX_TASK_BYTES}}

    with pytest.raises(RequestTooLarge, match=r"tasks\[1\]"):
        parse_batch(body({"tasks": [{"type": "echo"}, big]}))
