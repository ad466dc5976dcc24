"""The task types that make the scaling demo tunable, one registry entry each: what its payload
may hold (checked here, described as JSON Schema for the API's OpenAPI document), how long it
should take, what running it does, and what the burst tool sends of it. A new type is one new
entry in TASK_TYPES; the API's validation, its OpenAPI document and the burst's options follow.
Bounds keep one task well inside the worker's timeout."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chalicelib.errors import InvalidRequest, PermanentTaskFailure, TaskFailed

MAX_SLEEP_MS = 5_000
MAX_CPU_ROUNDS = 1_000_000
# A generous estimate of one SHA-256 round (0.77 us measured on this machine).
CPU_ROUND_MS = 0.001

Payload = dict[str, Any]
JsonSchema = dict[str, Any]
# The burst's payload options by setting name (e.g. {"sleep_ms": 300}); ints stay ints.
BurstOptions = Mapping[str, float]


@dataclass(frozen=True)
class PayloadField:
    """One field of a payload: its JSON type and bounds, checked by hand at run time (the
    functions do not ship a JSON Schema library) and described as JSON Schema from the same
    values, so the two cannot drift."""

    name: str
    kind: Literal["integer", "number", "string"]
    description: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind != "string" and (self.minimum is None or self.maximum is None):
            raise ValueError(f"payload field {self.name}: a number needs both bounds")

    def check(self, payload: Mapping[str, Any], where: str) -> None:
        if self.name not in payload and not self.required:
            return
        value = payload.get(self.name)
        if not self.accepts(value):
            raise InvalidRequest(f"{where}.{self.name}", self.rule)

    def accepts(self, value: Any) -> bool:
        if self.kind == "string":
            return isinstance(value, str)
        # bool is an int in Python; true is not a number of milliseconds. A float is not an
        # integer here even when whole (5.0): JSON Schema would say otherwise, Python's json not.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "integer" and isinstance(value, float):
            return False
        low, high = self.minimum, self.maximum
        assert low is not None and high is not None, "__post_init__ requires both"
        return bool(low <= value <= high)

    @property
    def rule(self) -> str:
        """What the field must be, as a 400 says it (`must be an integer from 0 to 5000`)."""
        if self.kind == "string":
            return "must be a string"
        article = "an integer" if self.kind == "integer" else "a number"
        return f"must be {article} from {self.minimum} to {self.maximum}"

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": self.kind, "description": self.description}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class BurstOption:
    """A command-line option of the burst (`--ms`) that sets one payload field of every task of
    its type; its bounds are the field's."""

    flag: str
    name: str  # the setting's name: argparse's dest and the report's key
    field: str  # the payload field it sets
    default: int | float
    help: str


@dataclass(frozen=True)
class TaskType:
    """One task type. `run` gets the runner (its injected sleep and randomness) and a payload
    already validated; `burst_payload` gets the task's number in its burst, the run's id and
    the burst's payload options."""

    name: str
    description: str
    run: Callable[[TaskRunner, Payload], Payload]
    fields: tuple[PayloadField, ...] = ()
    open_payload: bool = False  # any object is a valid payload (echo)
    estimated_ms: Callable[[Payload], int] = lambda payload: 0
    burst_options: tuple[BurstOption, ...] = ()
    burst_payload: Callable[[int, str, BurstOptions], Payload] | None = None
    mix_weight: float = 0.0  # its share of the burst's `mix`

    def validate(self, payload: Mapping[str, Any], where: str = "payload") -> None:
        """Raise InvalidRequest naming the field when `payload` does not suit this type."""
        if not self.open_payload:
            allowed = {f.name for f in self.fields}
            for key in payload:
                if key not in allowed:
                    expected = ", ".join(sorted(allowed)) or "none"
                    raise InvalidRequest(f"{where}.{key}", f"unknown field (allowed: {expected})")
        for payload_field in self.fields:
            payload_field.check(payload, where)

    def payload_schema(self) -> JsonSchema:
        """The payload as JSON Schema: what `validate` accepts."""
        schema: JsonSchema = {"type": "object", "description": self.description}
        if self.open_payload:
            return schema
        schema["properties"] = {f.name: f.json_schema() for f in self.fields}
        schema["additionalProperties"] = False
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        return schema

    def burst_body(self, number: int, run_id: str, options: BurstOptions) -> Payload:
        """The payload of the burst's task `number`: by default each option's value in its
        field."""
        if self.burst_payload is not None:
            return self.burst_payload(number, run_id, options)
        return {option.field: options[option.name] for option in self.burst_options}


def _run_echo(runner: TaskRunner, payload: Payload) -> Payload:
    return {"echo": payload}


def _run_sleep(runner: TaskRunner, payload: Payload) -> Payload:
    runner.sleep(payload["ms"] / 1000)
    return {"slept_ms": payload["ms"]}


def _run_cpu(runner: TaskRunner, payload: Payload) -> Payload:
    digest = b"serverless-scaling"
    for _ in range(payload["rounds"]):
        digest = hashlib.sha256(digest).digest()
    return {"rounds": payload["rounds"], "sha256": digest.hex()}


def _run_fail(runner: TaskRunner, payload: Payload) -> Payload:
    # Plain TaskFailed, not permanent: SQS retries it, then the dead-letter queue keeps it
    # (the poison-message demo).
    raise TaskFailed(payload.get("reason", "a fail task always fails"))


def _run_flaky(runner: TaskRunner, payload: Payload) -> Payload:
    if runner.random() < payload["failure_rate"]:
        raise TaskFailed(f"flaky task failed (failure_rate {payload['failure_rate']})")
    return {"survived_failure_rate": payload["failure_rate"]}


_REGISTRY = (
    TaskType(
        name="echo",
        description="Returns its payload, any JSON object, as the result.",
        run=_run_echo,
        open_payload=True,
        burst_payload=lambda number, run_id, options: {"n": number},
        mix_weight=0.6,
    ),
    TaskType(
        name="sleep",
        description="Holds its worker for `ms` milliseconds.",
        run=_run_sleep,
        fields=(PayloadField("ms", "integer", "milliseconds to sleep", 0, MAX_SLEEP_MS),),
        estimated_ms=lambda payload: int(payload["ms"]),
        burst_options=(BurstOption("--ms", "sleep_ms", "ms", 200, "sleep tasks: milliseconds"),),
        mix_weight=0.3,
    ),
    TaskType(
        name="cpu",
        description="Computes `rounds` chained SHA-256 hashes.",
        run=_run_cpu,
        fields=(PayloadField("rounds", "integer", "SHA-256 rounds", 1, MAX_CPU_ROUNDS),),
        estimated_ms=lambda payload: int(payload["rounds"] * CPU_ROUND_MS),
        burst_options=(
            BurstOption("--rounds", "cpu_rounds", "rounds", 20_000, "cpu tasks: SHA-256 rounds"),
        ),
        mix_weight=0.1,
    ),
    TaskType(
        name="fail",
        description="Always fails, with `reason`: retried, then the dead-letter queue.",
        run=_run_fail,
        fields=(PayloadField("reason", "string", "the error to record", required=False),),
        burst_payload=lambda number, run_id, options: {"reason": f"burst {run_id} asked for it"},
    ),
    TaskType(
        name="flaky",
        description="Fails each attempt with probability `failure_rate`.",
        run=_run_flaky,
        fields=(PayloadField("failure_rate", "number", "probability of failing an attempt", 0, 1),),
        burst_options=(
            BurstOption(
                "--failure-rate",
                "failure_rate",
                "failure_rate",
                0.2,
                "flaky tasks: probability of failing each attempt",
            ),
        ),
    ),
)
TASK_TYPES: Mapping[str, TaskType] = {task_type.name: task_type for task_type in _REGISTRY}


def validate_payload(task_type: str, payload: Mapping[str, Any], where: str = "payload") -> None:
    """Raise InvalidRequest naming the field when `payload` does not suit `task_type` (a type
    in TASK_TYPES)."""
    TASK_TYPES[task_type].validate(payload, where)


@dataclass
class TaskRunner:
    """Runs one task. Sleep and randomness are injected so tests need neither."""

    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default_factory=lambda: random.random)

    def estimated_ms(self, task_type: str, payload: Payload) -> int:
        """How long the task should take, for the worker's time budget; PermanentTaskFailure
        when the message holds what the API would have refused."""
        return self._entry(task_type, payload).estimated_ms(payload)

    def run(self, task_type: str, payload: Payload) -> Payload:
        """The task's result; TaskFailed when the task fails. A message that holds what the API
        would have refused (sent to the queue by other means) is a PermanentTaskFailure: no
        retry can fix it."""
        return self._entry(task_type, payload).run(self, payload)

    @staticmethod
    def _entry(task_type: str, payload: Payload) -> TaskType:
        """The type's registry entry, once the payload is known to suit it."""
        known = TASK_TYPES.get(task_type)
        if known is None:
            raise PermanentTaskFailure(f"unknown task type {task_type!r}")
        try:
            known.validate(payload)
        except InvalidRequest as e:
            raise PermanentTaskFailure(f"invalid payload: {e}") from e
        return known
