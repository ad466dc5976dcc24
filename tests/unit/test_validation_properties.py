"""Properties of the request validation, with hypothesis: whatever comes in, the answer is
TaskRequests or a client error; and validation accepts exactly what the OpenAPI document's
JSON Schema accepts, so the fuzz tests generated from that document test what the code does."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib import openapi
from chalicelib.errors import InvalidRequest, RequestTooLarge
from chalicelib.model import TaskRequest
from chalicelib.task_types import TASK_TYPES, PayloadField, TaskType
from chalicelib.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_TASK_BYTES,
    parse_batch,
    parse_task,
)

# Reproducible in CI: the same examples every run, nothing kept between runs.
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
CLIENT_ERRORS = (InvalidRequest, RequestTooLarge)
# C0 and C1: what the document's pattern refuses (PRINTABLE_PATTERN).
CONTROL_CHARACTERS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}


def strictly_an_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 5.0 as an integer; the API, like Python's json, does not.
    return isinstance(instance, int) and not isinstance(instance, bool)


def schema_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator of the document's components/schemas/NAME, $refs resolved in the document."""
    document = Resource.from_contents(openapi.document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:api", document)
    base = jsonschema.Draft202012Validator
    strict = jsonschema.validators.extend(
        base, type_checker=base.TYPE_CHECKER.redefine("integer", strictly_an_integer)
    )
    return strict({"$ref": f"urn:api#/components/schemas/{name}"}, registry=registry)


TASK_SCHEMA = schema_validator("Task")
BATCH_SCHEMA = schema_validator("Batch")

# JSON as json.loads returns it (floats may be NaN or infinite: json.dumps writes NaN,
# Infinity, which Python's json reads back and JSON forbids).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# JSON that PostgreSQL's jsonb can hold: what an echo payload may be.
storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=12,
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
# Every field any type has, plus one no type has; values of any JSON type, in and out of range.
field_names = st.sampled_from(
    sorted({f.name for t in TASK_TYPES.values() for f in t.fields} | {"extra"})
)
field_values = (
    scalars
    | st.integers(-10, 6000)
    | st.integers(-(10**40), 10**40)
    | st.floats(-1.5, 1.5)
    | st.sampled_from([0, 1, 0.0, 1.0, 5000, 5001, 1_000_000, 1_000_001, 5.0, True])
)
payloads = st.dictionaries(field_names, field_values, max_size=3) | storable_values
# Keys on which the document's pattern and str.isprintable agree: printable, or holding a
# control character (a separator such as U+2028 alone is refused by validation only).
idempotency_keys = st.text(max_size=MAX_IDEMPOTENCY_KEY_LENGTH + 2).filter(
    lambda key: key.isprintable() or bool(CONTROL_CHARACTERS & set(key))
)
any_task_bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([*TASK_TYPES, "teleport"]) | scalars,
        "payload": payloads,
        "idempotency_key": idempotency_keys | scalars,
        "extra": scalars,
    },
)


def valid_field_value(field: PayloadField) -> st.SearchStrategy[Any]:
    if field.kind == "string":
        return storable_text
    integers = st.integers(int(field.minimum or 0), int(field.maximum or 0))
    if field.kind == "integer":
        return integers
    return integers | st.floats(field.minimum, field.maximum)


def valid_payload(task_type: TaskType) -> st.SearchStrategy[dict[str, Any]]:
    if task_type.open_payload:
        return st.dictionaries(storable_text, storable_values, max_size=3)
    fields = {f.name: valid_field_value(f) for f in task_type.fields if f.required}
    optional = {f.name: valid_field_value(f) for f in task_type.fields if not f.required}
    return st.fixed_dictionaries(fields, optional=optional)


@st.composite
def near_valid_task_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid task of a registered type, then, half the time, one thing changed."""
    task_type = TASK_TYPES[draw(st.sampled_from(list(TASK_TYPES)))]
    body: dict[str, Any] = {"type": task_type.name, "payload": draw(valid_payload(task_type))}
    if draw(st.booleans()):
        body["idempotency_key"] = draw(idempotency_keys)
    change = draw(st.sampled_from(["none", "payload field", "envelope field", "drop"]))
    if change == "payload field":
        body["payload"][draw(field_names)] = draw(field_values)
    elif change == "envelope field":
        body[draw(st.sampled_from(["type", "payload", "idempotency_key", "extra"]))] = draw(scalars)
    elif change == "drop":
        del body[draw(st.sampled_from(sorted(body)))]
    return body


task_bodies = near_valid_task_bodies() | any_task_bodies


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def parsed_or_refused(parse: Any, raw: bytes) -> list[TaskRequest] | Exception:
    """What parse returns, as a list, or the client error it raised; any other exception
    goes up and fails the test."""
    try:
        parsed = parse(raw)
    except CLIENT_ERRORS as e:
        return e
    return parsed if isinstance(parsed, list) else [parsed]


def is_tasks_or_client_error(outcome: list[TaskRequest] | Exception) -> bool:
    if isinstance(outcome, Exception):
        return isinstance(outcome, CLIENT_ERRORS)
    return bool(outcome) and all(isinstance(task, TaskRequest) for task in outcome)


@PROPERTY
@given(value=json_values)
def test_any_json_is_tasks_or_a_client_error(value: Any) -> None:
    for parse in (parse_task, parse_batch):
        assert is_tasks_or_client_error(parsed_or_refused(parse, encoded(value)))


@PROPERTY
@given(raw=st.binary(max_size=200) | st.text().map(str.encode))
def test_any_bytes_are_tasks_or_a_client_error(raw: bytes) -> None:
    for parse in (parse_task, parse_batch):
        assert is_tasks_or_client_error(parsed_or_refused(parse, raw))


@PROPERTY
@given(body=task_bodies)
def test_validation_accepts_a_task_exactly_when_the_schema_does(body: dict[str, Any]) -> None:
    raw = encoded(body)
    assume(len(raw) <= MAX_TASK_BYTES)  # a byte limit no JSON Schema can state

    refused = isinstance(parsed_or_refused(parse_task, raw), Exception)

    assert refused != TASK_SCHEMA.is_valid(body)


@PROPERTY
@given(tasks=st.lists(task_bodies, max_size=4), extra=st.booleans())
def test_validation_accepts_a_batch_exactly_when_the_schema_does(
    tasks: list[dict[str, Any]], extra: bool
) -> None:
    body: dict[str, Any] = {"tasks": tasks, **({"more": 1} if extra else {})}
    keys = [t["idempotency_key"] for t in tasks if isinstance(t.get("idempotency_key"), str)]
    assume(len(keys) == len(set(keys)))  # unique keys: a rule no JSON Schema can state

    refused = isinstance(parsed_or_refused(parse_batch, encoded(body)), Exception)

    assert refused != BATCH_SCHEMA.is_valid(body)


@PROPERTY
@given(key=st.text(max_size=MAX_IDEMPOTENCY_KEY_LENGTH + 10))
def test_an_idempotency_key_is_kept_exactly_when_printable_and_short(key: str) -> None:
    raw = encoded({"type": "echo", "idempotency_key": key})
    wanted = 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isprintable()

    if wanted:
        assert parse_task(raw).idempotency_key == key
    else:
        with pytest.raises(InvalidRequest, match="^idempotency_key: must be a printable"):
            parse_task(raw)


@PROPERTY
@given(ms=st.integers() | st.integers(-(10**4000), 10**4000))
def test_any_integer_is_a_sleep_exactly_when_in_range(ms: int) -> None:
    raw = encoded({"type": "sleep", "payload": {"ms": ms}})
    assume(len(raw) <= MAX_TASK_BYTES)

    if 0 <= ms <= 5000:
        assert parse_task(raw).payload == {"ms": ms}
    else:
        with pytest.raises(InvalidRequest, match="^payload.ms: must be an integer from 0 to 5000"):
            parse_task(raw)


@PROPERTY
@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.booleans())
def test_a_float_or_a_bool_is_never_an_integer(value: float | bool) -> None:
    for name, field in (("sleep", "ms"), ("cpu", "rounds")):
        with pytest.raises(InvalidRequest, match=f"^payload.{field}: must be an integer"):
            parse_task(encoded({"type": name, "payload": {field: value}}))


@PROPERTY
@given(payload=st.dictionaries(storable_text, storable_values, max_size=4))
def test_an_echo_payload_jsonb_can_hold_comes_through_unchanged(payload: dict[str, Any]) -> None:
    raw = encoded({"type": "echo", "payload": payload})
    assume(len(raw) <= MAX_TASK_BYTES)

    assert parse_task(raw).payload == payload


@PROPERTY
@given(text=st.text(st.characters(codec="utf-8"), min_size=1).map(lambda s: s + "\x00"))
def test_a_nul_anywhere_in_a_payload_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="U\\+0000"):
        parse_task(encoded({"type": "echo", "payload": {"deep": [{"x": text}]}}))
