"""When each task is due, and what it is. The whole schedule is computed before the first send,
so sending never waits on an answer to decide what comes next (an open model)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from burst.settings import MIX, BurstSettings
from chalicelib.task_types import TASK_TYPES

# The mix, from the registry: mostly quick tasks, some that hold a worker for a moment.
MIX_WEIGHTS = {t.name: t.mix_weight for t in TASK_TYPES.values() if t.mix_weight > 0}
KEY_PREFIX = "burst"

Task = dict[str, Any]  # a POST /tasks body


@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request: POST /tasks with one task, or POST /tasks/batch with several.
    `due` is seconds after the burst's start; `first_task` the number of its first task."""

    index: int
    due: float
    first_task: int
    tasks: tuple[Task, ...]

    @property
    def task_numbers(self) -> range:
        return range(self.first_task, self.first_task + len(self.tasks))


def arrival_offsets(profile: str, count: int, rate: float, duration: float) -> list[float]:
    """Due times (seconds from the start) of `count` tasks, ascending.

    spike: all at 0 (as fast as the sender allows); steady: k / rate; ramp: the rate rises
    linearly from 0 to `rate` over `duration`, so arrivals so far are rate * t^2 / (2 duration)
    and the k-th is due at sqrt(2 k duration / rate). Steady and ramp stop at the end of
    `duration` even when `count` is larger."""
    if profile == "spike":
        return [0.0] * count
    if profile == "steady":
        due = [k / rate for k in range(count)]
    elif profile == "ramp":
        due = [math.sqrt(2 * k * duration / rate) for k in range(count)]
    else:
        raise ValueError(f"unknown profile {profile!r}")
    return [t for t in due if t < duration]


def idempotency_key(run_id: str, number: int) -> str:
    """Every task of a run carries its run's key prefix: the integrity check finds the run's rows
    by it, including rows whose POST was never answered."""
    return f"{run_key_prefix(run_id)}{number}"


def run_key_prefix(run_id: str) -> str:
    return f"{KEY_PREFIX}-{run_id}-"


def task_payload(task_type: str, number: int, settings: BurstSettings, run_id: str) -> Task:
    """Task `number`'s payload, as its type's registry entry builds it from the settings."""
    return TASK_TYPES[task_type].burst_body(number, run_id, settings.payload_options)


def task_bodies(settings: BurstSettings, run_id: str, count: int) -> list[Task]:
    """The bodies of tasks 0 .. count-1. The mix is drawn from a generator seeded with --seed,
    so a run can be repeated task for task."""
    rng = random.Random(settings.seed)
    bodies = []
    for number in range(count):
        task_type = settings.task_type
        if task_type == MIX:
            task_type = rng.choices(list(MIX_WEIGHTS), list(MIX_WEIGHTS.values()))[0]
        bodies.append(
            {
                "type": task_type,
                "payload": task_payload(task_type, number, settings, run_id),
                "idempotency_key": idempotency_key(run_id, number),
            }
        )
    return bodies


def plan_requests(offsets: list[float], bodies: list[Task], batch: int) -> list[PlannedRequest]:
    """Tasks in consecutive groups of `batch` (the last may be smaller); a group is due when its
    first task is, so a run starts at once and its tasks never leave later than scheduled."""
    if len(offsets) != len(bodies):
        raise ValueError(f"{len(offsets)} due times for {len(bodies)} tasks")
    return [
        PlannedRequest(index, offsets[first], first, tuple(bodies[first : first + batch]))
        for index, first in enumerate(range(0, len(bodies), batch))
    ]


def plan(settings: BurstSettings, run_id: str) -> list[PlannedRequest]:
    offsets = arrival_offsets(settings.profile, settings.count, settings.rate, settings.duration)
    return plan_requests(offsets, task_bodies(settings, run_id, len(offsets)), settings.batch)
