"""What each task type does when run."""

from __future__ import annotations

import pytest

from chalicelib.errors import TaskFailed
from chalicelib.task_types import TaskRunner


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


def test_fail_always_fails_with_its_reason() -> None:
    with pytest.raises(TaskFailed, match="told to"):
        TaskRunner().run("fail", {"reason": "told to"})


def test_flaky_fails_below_its_failure_rate_only() -> None:
    with pytest.raises(TaskFailed):
        TaskRunner(random=lambda: 0.29).run("flaky", {"failure_rate": 0.3})
    assert TaskRunner(random=lambda: 0.3).run("flaky", {"failure_rate": 0.3})


@pytest.mark.parametrize(
    ("task_type", "payload"), [("teleport", {}), ("sleep", {}), ("cpu", {"rounds": "many"})]
)
def test_a_message_the_api_would_refuse_fails_as_a_task(
    task_type: str, payload: dict[str, object]
) -> None:
    with pytest.raises(TaskFailed):
        TaskRunner().run(task_type, payload)
