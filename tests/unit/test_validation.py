"""Request bodies: what POST /tasks and POST /tasks/batch accept, and the field named when not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.errors import InvalidRequest, RequestTooLarge
from chalicelib.model import TaskRequest
from chalicelib.validation import (
    MAX_BATCH_TASKS,
    MAX_PAYLOAD_DEPTH,
    MAX_TASK_BYTES,
    parse_batch,
    parse_task,
)


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


def test_a_batch_item_names_its_index_and_the_rule() -> None:
    tasks = [{"type": "echo"}] * 3 + [{"type": "sleep", "payload": {"ms": 9000}}]

    with pytest.raises(InvalidRequest) as error:
        parse_batch(body({"tasks": tasks}))

    assert str(error.value) == "tasks[3].payload.ms: must be an integer from 0 to 5000"


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# What Python's json reads but JSON or PostgreSQL's jsonb cannot hold: each was a 500 (an
# exception out of json.loads, or a row PostgreSQL refused), each is a 400 naming it now.
@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (b'{"type": "echo", "payload": {"x": NaN}}', "body", "NaN is not JSON"),
        (b'{"type": "flaky", "payload": {"failure_rate": Infinity}}', "body", "Infinity"),
        (b'{"type": "echo", "payload": {"x": 1e400}}', "payload.x", "finite"),
        (b'{"type": "echo", "payload": {"x": ' + b"9" * 5000 + b"}}", "body", "digits"),
        (b"[" * 8000 + b"]" * 8000, "body", "nested too deeply"),
        (
            body({"type": "echo", "payload": {"x": nested_list(MAX_PAYLOAD_DEPTH)}}),
            "payload.x" + "[0]" * (MAX_PAYLOAD_DEPTH - 1),
            f"deeper than {MAX_PAYLOAD_DEPTH}",
        ),
        (body({"type": "echo", "payload": {"x": ["ok", "a\x00b"]}}), "payload.x[1]", r"U\+0000"),
        (b'{"type": "echo", "payload": {"x": "\\ud800"}}', "payload.x", "lone surrogate"),
        (body({"type": "echo", "payload": {"a\x00": 1}}), "payload", "key"),
        (body({"type": "fail", "payload": {"reason": "\x00"}}), "payload.reason", r"U\+0000"),
    ],
)
def test_what_postgresql_or_json_cannot_hold_is_refused_naming_it(
    raw: bytes, field: str, problem: str
) -> None:
    with pytest.raises(InvalidRequest, match=problem) as error:
        parse_task(raw)

    assert error.value.field == field


def test_a_surrogate_pair_is_one_character_and_stored_as_such() -> None:
    parsed = parse_task(b'{"type": "echo", "payload": {"x": "\\ud83d\\ude00"}}')

    assert parsed.payload == {"x": "\N{GRINNING FACE}"}


def test_a_payload_may_nest_up_to_its_depth_limit() -> None:
    nested = nested_list(MAX_PAYLOAD_DEPTH - 1)

    assert parse_task(body({"type": "echo", "payload": {"x": nested}})).payload == {"x": nested}


@pytest.mark.parametrize("value", [5.0, True, False, "5", None, [5], {"ms": 5}, 10**30])
def test_only_an_integer_is_an_integer(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="payload.ms: must be an integer from 0 to 5000"):
        parse_task(body({"type": "sleep", "payload": {"ms": value}}))
