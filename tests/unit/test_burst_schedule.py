"""The burst's arrival schedules and task bodies: computed before the first send."""

from __future__ import annotations

import pytest

from burst import schedule
from burst.settings import BurstSettings


def test_a_spike_is_due_all_at_once() -> None:
    assert schedule.arrival_offsets("spike", 5, rate=1, duration=1) == [0.0] * 5


def test_steady_arrivals_are_evenly_spaced_and_stop_at_the_duration() -> None:
    offsets = schedule.arrival_offsets("steady", 10_000, rate=4, duration=2)

    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_steady_arrivals_stop_at_the_count_first_when_it_is_smaller() -> None:
    assert schedule.arrival_offsets("steady", 3, rate=10, duration=60) == [0.0, 0.1, 0.2]


def test_a_ramp_rises_linearly_to_the_rate() -> None:
    offsets = schedule.arrival_offsets("ramp", 10_000, rate=100, duration=10)

    # a linear ramp from 0 to 100/s over 10 s holds 100 * 10 / 2 tasks
    assert len(offsets) == 500
    assert offsets == sorted(offsets) and offsets[-1] < 10
    per_second = [sum(1 for t in offsets if s <= t < s + 1) for s in range(10)]
    # in second s the rate averages 10 * (s + 0.5) tasks/s
    for second, count in enumerate(per_second):
        assert count == pytest.approx(10 * (second + 0.5), abs=1.5)
    assert per_second == sorted(per_second)


def test_an_unknown_profile_is_an_error() -> None:
    with pytest.raises(ValueError, match="sawtooth"):
        schedule.arrival_offsets("sawtooth", 1, 1, 1)


def test_every_task_carries_the_runs_idempotency_key() -> None:
    bodies = schedule.task_bodies(
        BurstSettings(task_type="sleep", payload_options={"sleep_ms": 300}), "RUN", 3
    )

    assert [b["idempotency_key"] for b in bodies] == ["burst-RUN-0", "burst-RUN-1", "burst-RUN-2"]
    assert {b["type"] for b in bodies} == {"sleep"}
    assert bodies[0]["payload"] == {"ms": 300}


def test_the_mix_is_repeatable_with_its_seed_and_holds_echo_sleep_and_cpu() -> None:
    settings = BurstSettings(task_type="mix", seed=3)

    first = schedule.task_bodies(settings, "R", 200)
    again = schedule.task_bodies(settings, "R", 200)

    assert first == again
    kinds = [b["type"] for b in first]
    assert set(kinds) == {"echo", "sleep", "cpu"}
    assert kinds.count("echo") > kinds.count("sleep") > kinds.count("cpu")


def test_task_parameters_reach_the_payloads() -> None:
    settings = BurstSettings(payload_options={"cpu_rounds": 9, "failure_rate": 0.5})

    assert schedule.task_payload("cpu", 0, settings, "R") == {"rounds": 9}
    assert schedule.task_payload("flaky", 0, settings, "R") == {"failure_rate": 0.5}
    assert schedule.task_payload("echo", 7, settings, "R") == {"n": 7}
    assert "R" in schedule.task_payload("fail", 0, settings, "R")["reason"]


def test_batched_requests_group_consecutive_tasks_due_with_their_first() -> None:
    bodies = [{"type": "echo", "payload": {"n": n}} for n in range(5)]

    planned = schedule.plan_requests([0.0, 0.1, 0.2, 0.3, 0.4], bodies, batch=2)

    assert [(r.due, r.first_task, len(r.tasks)) for r in planned] == [
        (0.0, 0, 2),
        (0.2, 2, 2),
        (0.4, 4, 1),
    ]
    assert list(planned[1].task_numbers) == [2, 3]


def test_a_plan_follows_the_settings() -> None:
    settings = BurstSettings(profile="steady", count=1000, rate=20, duration=1.5, batch=10)

    planned = schedule.plan(settings, "R")

    assert sum(len(r.tasks) for r in planned) == 30
    assert len(planned) == 3
