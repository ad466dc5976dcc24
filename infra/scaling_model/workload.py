"""What arrives: the burst tool's own schedule (its profiles and options, `burst.schedule`), in
bins of the model's tick, and what each task asks of a worker (its type's estimated time, its
chance of failing), from the task types' registry."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from burst import schedule
from burst.settings import MIX, BurstSettings
from chalicelib.task_types import TASK_TYPES

BIN_SECONDS = 0.1  # arrivals are counted per bin: the model moves batches, not messages
# The share of attempts that fail, by task type (flaky's is its payload option).
ALWAYS_FAILS = frozenset({"fail"})


@dataclass(frozen=True)
class Workload:
    """Tasks arriving at the API, and what each asks of a worker on average."""

    arrivals: tuple[tuple[float, int], ...]  # (seconds after the first send, tasks), ascending
    tasks_per_request: int
    task_seconds: float  # a task's own work (sleep, hashing), by its type's estimate
    failure_rate: float  # the chance an attempt fails
    # True: `arrivals` are when tasks reached the queue (a measured run), not when they were sent
    at_queue: bool = False

    @property
    def tasks(self) -> int:
        return sum(n for _, n in self.arrivals)

    @property
    def requests(self) -> int:
        return sum(math.ceil(n / self.tasks_per_request) for _, n in self.arrivals)


def binned(offsets: Iterable[float], width: float = BIN_SECONDS) -> tuple[tuple[float, int], ...]:
    counts = collections.Counter(math.floor(t / width) for t in offsets)
    return tuple((index * width, n) for index, n in sorted(counts.items()))


def type_weights(task_type: str) -> dict[str, float]:
    """The task types a burst of `task_type` sends, with their shares (the mix's, or one)."""
    if task_type == MIX:
        weights = {t.name: t.mix_weight for t in TASK_TYPES.values() if t.mix_weight > 0}
        total = sum(weights.values())
        return {name: w / total for name, w in weights.items()}
    return {task_type: 1.0}


def task_seconds(settings: BurstSettings) -> float:
    """A task's own work, in seconds, averaged over the types the burst sends, as the registry
    estimates it for the worker's time budget."""
    total = 0.0
    for name, share in type_weights(settings.task_type).items():
        payload = schedule.task_payload(name, 0, settings, "model")
        total += share * TASK_TYPES[name].estimated_ms(payload) / 1000
    return total


def failure_rate(settings: BurstSettings) -> float:
    rate = 0.0
    for name, share in type_weights(settings.task_type).items():
        if name in ALWAYS_FAILS:
            rate += share
        elif name == "flaky":
            rate += share * float(settings.payload_options["failure_rate"])
    return rate


def from_burst(settings: BurstSettings) -> Workload:
    """The burst's schedule as `scripts/burst` would send it (any count: the model is not bound
    by the laptop's limits), each request's tasks due with its first, as `schedule.plan_requests`
    groups them, so a bin holds whole requests."""
    offsets = schedule.arrival_offsets(
        settings.profile, settings.count, settings.rate, settings.duration
    )
    per_request = settings.batch
    counts = collections.Counter(
        math.floor(offsets[first] / BIN_SECONDS) for first in range(0, len(offsets), per_request)
    )
    last = (len(offsets) - 1) // per_request * per_request if offsets else 0
    arrivals = {index: n * per_request for index, n in counts.items()}
    if offsets and len(offsets) - last < per_request:  # the last request is smaller
        arrivals[math.floor(offsets[last] / BIN_SECONDS)] -= per_request - (len(offsets) - last)
    return Workload(
        tuple((index * BIN_SECONDS, n) for index, n in sorted(arrivals.items())),
        per_request,
        task_seconds(settings),
        failure_rate(settings),
    )


def from_report(report: Mapping[str, Any]) -> Workload:
    """What a measured burst put in the queue, second by second: its queue samples (visible and
    in flight) plus the tasks finished so far, spread evenly over each second. The send times
    alone say too little: a loaded API took seconds to enqueue what it was sent."""
    settings = burst_settings_of(report)
    accepted = int(report["tasks"]["accepted"])
    offsets: list[float] = []
    enqueued = finished = 0
    for entry in report["timeline"]:
        finished += entry["completions"]
        visible, in_flight = entry.get("queue_visible"), entry.get("queue_in_flight")
        if visible is None or in_flight is None:
            continue
        seen = min(accepted, max(enqueued, visible + in_flight + finished))
        offsets += spread(entry["second"], seen - enqueued)
        enqueued = seen
    if enqueued < accepted:  # the rest reached the queue between samples, at the end
        offsets += spread(report["timeline"][-1]["second"], accepted - enqueued)
    return Workload(
        binned(offsets), settings.batch, task_seconds(settings), failure_rate(settings), True
    )


def spread(second: int, n: int) -> list[float]:
    return [second + (k + 0.5) / n for k in range(n)]


def burst_settings_of(report: Mapping[str, Any]) -> BurstSettings:
    """The BurstSettings a report was made with (its flat `settings`, back into fields)."""
    flat = dict(report["settings"])
    options = {
        name: flat.pop(name) for name in list(flat) if name in BurstSettings().payload_options
    }
    fields = set(BurstSettings.__dataclass_fields__) - {"payload_options", "out_dir"}
    return BurstSettings(
        **{name: flat[name] for name in fields if name in flat}, payload_options=options
    )
