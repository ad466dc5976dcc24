"""The task types that make the scaling demo tunable: what each payload may hold, and what
running it does. Bounds keep one task well inside the worker's timeout."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import InvalidRequest, PermanentTaskFailure, TaskFailed

MAX_SLEEP_MS = 5_000
MAX_CPU_ROUNDS = 1_000_000
# A generous estimate of one SHA-256 round (0.77 us measured on this machine).
CPU_ROUND_MS = 0.001

Payload = dict[str, Any]


def _only_fields(payload: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in payload:
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(f"{where}.{key}", f"unknown field (allowed: {expected})")


def _bounded_int(payload: Mapping[str, Any], key: str, low: int, high: int, where: str) -> int:
    value = payload.get(key)
    # bool is an int in Python; true is not a number of milliseconds.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{where}.{key}", f"must be an integer from {low} to {high}")
    return value


def _validate_echo(payload: Mapping[str, Any], where: str) -> None:
    """Any object: it comes back as the result."""


def _validate_sleep(payload: Mapping[str, Any], where: str) -> None:
    _only_fields(payload, {"ms"}, where)
    _bounded_int(payload, "ms", 0, MAX_SLEEP_MS, where)


def _validate_cpu(payload: Mapping[str, Any], where: str) -> None:
    _only_fields(payload, {"rounds"}, where)
    _bounded_int(payload, "rounds", 1, MAX_CPU_ROUNDS, where)


def _validate_fail(payload: Mapping[str, Any], where: str) -> None:
    _only_fields(payload, {"reason"}, where)
    if "reason" in payload and not isinstance(payload["reason"], str):
        raise InvalidRequest(f"{where}.reason", "must be a string")


def _validate_flaky(payload: Mapping[str, Any], where: str) -> None:
    _only_fields(payload, {"failure_rate"}, where)
    rate = payload.get("failure_rate")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise InvalidRequest(f"{where}.failure_rate", "must be a number from 0 to 1")


VALIDATORS: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "echo": _validate_echo,
    "sleep": _validate_sleep,
    "cpu": _validate_cpu,
    "fail": _validate_fail,
    "flaky": _validate_flaky,
}
TASK_TYPES = tuple(VALIDATORS)


def validate_payload(task_type: str, payload: Mapping[str, Any], where: str = "payload") -> None:
    """Raise InvalidRequest naming the field when `payload` does not suit `task_type`."""
    VALIDATORS[task_type](payload, where)


@dataclass
class TaskRunner:
    """Runs one task. Sleep and randomness are injected so tests need neither."""

    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default_factory=lambda: random.random)

    def estimated_ms(self, task_type: str, payload: Payload) -> int:
        """How long the task should take, for the worker's time budget; PermanentTaskFailure
        when the message holds what the API would have refused."""
        self._check(task_type, payload)
        if task_type == "sleep":
            return int(payload["ms"])
        if task_type == "cpu":
            return int(payload["rounds"] * CPU_ROUND_MS)
        return 0

    def _check(self, task_type: str, payload: Payload) -> None:
        if task_type not in VALIDATORS:
            raise PermanentTaskFailure(f"unknown task type {task_type!r}")
        try:
            validate_payload(task_type, payload)
        except InvalidRequest as e:
            raise PermanentTaskFailure(f"invalid payload: {e}") from e

    def run(self, task_type: str, payload: Payload) -> Payload:
        """The task's result; TaskFailed when the task fails, or when the message holds what
        the API would have refused (a message sent to the queue by other means)."""
        self._check(task_type, payload)
        if task_type == "echo":
            return {"echo": payload}
        if task_type == "sleep":
            self.sleep(payload["ms"] / 1000)
            return {"slept_ms": payload["ms"]}
        if task_type == "cpu":
            digest = b"serverless-scaling"
            for _ in range(payload["rounds"]):
                digest = hashlib.sha256(digest).digest()
            return {"rounds": payload["rounds"], "sha256": digest.hex()}
        if task_type == "fail":
            raise TaskFailed(payload.get("reason", "a fail task always fails"))
        if task_type == "flaky":
            if self.random() < payload["failure_rate"]:
                raise TaskFailed(f"flaky task failed (failure_rate {payload['failure_rate']})")
            return {"survived_failure_rate": payload["failure_rate"]}
        raise AssertionError(f"{task_type} is validated but not run")
