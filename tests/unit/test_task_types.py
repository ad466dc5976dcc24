"""What each task type does when run, and the registry that says so: one entry per type."""

from __future__ import annotations

import pytest

from chalicelib.errors import InvalidRequest, PermanentTaskFailure, TaskFailed
from chalicelib.task_types import TASK_TYPES, PayloadField, TaskRunner


def test_echo_returns_its_payload() -> None:
    assert TaskRunner().run("echo", {"a": [1, 2]}) == {"echo": {"a": [1, 2]}}


def test_sleep_sleeps_for_the_payload_milliseconds() -> None:
    slept: list[float] = []

    result = TaskRunner(sleep=slept.append).run("sleep", {"ms": 250})

    assert slept == [0.25]
    assert result == {"slept_ms": 250}


def test_cpu_hashes_the_given_rounds_deterministically() -> None:
    first = TaskRunner().run("cpu", {"rounds": 1000})
    second = TaskRunner().run("cpu", {"rounds": 1000})
    other = TaskRunner().run("cpu", {"rounds": 1001})

    assert first == second
    assert first["sha256"] != other["sha256"]


def test_fail_always_fails_with_its_reason_and_is_retried() -> None:
    with pytest.raises(TaskFailed, match="told to") as failed:
        TaskRunner().run("fail", {"reason": "told to"})

    # not permanent: SQS retries it, then the dead-letter queue keeps it (the poison demo)
    assert not isinstance(failed.value, PermanentTaskFailure)


def test_flaky_fails_below_its_failure_rate_only() -> None:
    with pytest.raises(TaskFailed):
        TaskRunner(random=lambda: 0.29).run("flaky", {"failure_rate": 0.3})
    assert TaskRunner(random=lambda: 0.3).run("flaky", {"failure_rate": 0.3})


@pytest.mark.parametrize(
    ("task_type", "payload"), [("teleport", {}), ("sleep", {}), ("cpu", {"rounds": "many"})]
)
def test_a_message_the_api_would_refuse_fails_permanently(
    task_type: str, payload: dict[str, object]
) -> None:
    with pytest.raises(PermanentTaskFailure, match="unknown task type|invalid payload"):
        TaskRunner().run(task_type, payload)
    with pytest.raises(PermanentTaskFailure):  # before the worker budgets its time
        TaskRunner().estimated_ms(task_type, payload)


@pytest.mark.parametrize(
    ("task_type", "payload", "expected_ms"),
    [
        ("sleep", {"ms": 1200}, 1200),
        ("cpu", {"rounds": 500_000}, 500),
        ("echo", {"big": "x" * 100}, 0),
    ],
)
def test_the_estimated_duration_comes_from_the_types_entry(
    task_type: str, payload: dict[str, object], expected_ms: int
) -> None:
    assert TaskRunner().estimated_ms(task_type, payload) == expected_ms


def test_every_type_has_one_entry_named_after_it() -> None:
    assert list(TASK_TYPES) == ["echo", "sleep", "cpu", "fail", "flaky"]
    assert all(name == entry.name for name, entry in TASK_TYPES.items())


@pytest.mark.parametrize("name", list(TASK_TYPES))
def test_what_the_burst_sends_of_each_type_is_valid_for_it(name: str) -> None:
    entry = TASK_TYPES[name]
    options = {o.name: o.default for t in TASK_TYPES.values() for o in t.burst_options}

    payload = entry.burst_body(3, "RUN", options)

    entry.validate(payload)  # raises when the burst would send what the API refuses


def test_a_payload_schema_says_what_validation_checks() -> None:
    schema = TASK_TYPES["sleep"].payload_schema()

    assert schema["properties"]["ms"] | {"description": ""} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 5000,
        "description": "",
    }
    assert (schema["required"], schema["additionalProperties"]) == (["ms"], False)
    assert "properties" not in TASK_TYPES["echo"].payload_schema()  # any object


def test_an_optional_field_is_checked_only_when_present() -> None:
    TASK_TYPES["fail"].validate({})

    with pytest.raises(InvalidRequest, match=r"^payload.reason: must be a string$"):
        TASK_TYPES["fail"].validate({"reason": 3})


def test_a_number_field_without_bounds_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="both bounds"):
        PayloadField("ms", "integer", "milliseconds", minimum=0)
