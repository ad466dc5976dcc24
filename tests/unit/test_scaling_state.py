"""The dashboard's state words and recommendations, from series as /metrics aligns them
(oldest first, one value per second)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chalicelib.model import QueueDepth
from chalicelib.scaling_state import (
    Observed,
    TriggerSettings,
    describe_state,
    recommend,
)

SECONDS = 60
TRIGGER = TriggerSettings(
    worker_function="app-local-worker",
    event_source_mapping="uuid-1",
    mapping_state="Enabled",
    batch_size=10,
    batching_window_seconds=0,
    maximum_concurrency=10,
    reserved_concurrency=None,
    visibility_timeout_seconds=180,
    max_receive_count=5,
)


def flat(value: float | None) -> list[float | None]:
    return [value] * SECONDS


def ramp(first: float, last: float) -> list[float | None]:
    step = (last - first) / (SECONDS - 1)
    return [first + step * i for i in range(SECONDS)]


def observed(
    visible: int = 0,
    in_flight: int = 0,
    dead_letters: int = 0,
    **series: Sequence[float | None],
) -> Observed:
    return Observed(
        period=1,
        series=series,
        queue=QueueDepth(visible, in_flight, 0),
        dead_letter_queue=QueueDepth(dead_letters, 0, 0),
    )


def test_no_backlog_and_no_batch_is_idle() -> None:
    state = describe_state(observed(concurrent_batches=flat(0)), TRIGGER)

    assert state.name == "idle"
    assert state.headline == "Idle"


def test_a_growing_backlog_below_the_maximum_is_scaling_up() -> None:
    obs = observed(
        visible=300,
        in_flight=50,
        queue_visible=ramp(0, 290),
        accepted_per_s=flat(120),
        concurrent_batches=ramp(1, 5),
    )

    state = describe_state(obs, TRIGGER)

    assert state.name == "scaling_up"
    assert "5 of 10 batches at once" in state.detail


def test_batches_at_maximum_concurrency_for_a_while_is_at_maximum() -> None:
    obs = observed(
        visible=400,
        in_flight=100,
        queue_visible=ramp(100, 390),
        accepted_per_s=flat(120),
        concurrent_batches=flat(10),
    )

    assert describe_state(obs, TRIGGER).name == "at_maximum"


@pytest.mark.parametrize(
    "arrivals",
    [flat(0), flat(50)],  # nothing arriving, or arriving slower than the drain
)
def test_a_falling_backlog_is_draining(arrivals: list[float | None]) -> None:
    obs = observed(
        visible=100,
        in_flight=100,
        queue_visible=ramp(400, 110),
        accepted_per_s=arrivals,
        concurrent_batches=flat(10),
    )

    state = describe_state(obs, TRIGGER)

    assert state.name == "draining"
    assert "100 messages waiting" in state.detail


def test_last_batches_running_on_an_empty_queue_are_draining() -> None:
    obs = observed(concurrent_batches=flat(3), accepted_per_s=flat(0))

    assert describe_state(obs, TRIGGER).name == "draining"


def test_throttles_in_the_last_seconds_are_throttled() -> None:
    obs = observed(
        visible=100,
        queue_visible=flat(100),
        accepted_per_s=flat(10),
        concurrent_batches=flat(2),
        throttles_per_s=[0] * 55 + [1] * 5,
    )

    state = describe_state(obs, TRIGGER)

    assert state.name == "throttled"
    assert "5 throttled invocations" in state.detail


def test_throttles_long_ago_are_not_throttled_now() -> None:
    obs = observed(
        visible=100,
        queue_visible=flat(100),
        accepted_per_s=flat(10),
        concurrent_batches=flat(2),
        throttles_per_s=[1] * 5 + [0] * 55,
    )

    assert describe_state(obs, TRIGGER).name != "throttled"


def test_many_retried_records_are_failing() -> None:
    obs = observed(
        visible=10,
        queue_visible=flat(10),
        completed_per_s=flat(2),
        retried_per_s=flat(1),
        concurrent_batches=flat(1),
    )

    state = describe_state(obs, TRIGGER)

    assert state.name == "failing"
    assert "33% of 90 records" in state.detail


def test_a_few_failures_among_many_successes_are_not_failing() -> None:
    obs = observed(
        visible=10,
        queue_visible=flat(10),
        completed_per_s=flat(100),
        failed_per_s=flat(0.5),
        accepted_per_s=flat(100),
        concurrent_batches=flat(3),
    )

    assert describe_state(obs, TRIGGER).name == "scaling_up"


def ids(obs: Observed, trigger: TriggerSettings = TRIGGER) -> list[str]:
    return [r.id for r in recommend(obs, trigger)]


def test_a_quiet_system_has_nothing_to_recommend() -> None:
    assert recommend(observed(concurrent_batches=flat(0)), TRIGGER) == []


def test_a_backlog_growing_at_maximum_concurrency_asks_for_more_concurrency() -> None:
    obs = observed(visible=900, queue_visible=ramp(100, 880), concurrent_batches=flat(10))

    [recommendation] = recommend(obs, TRIGGER)

    assert recommendation.id == "raise_max_concurrency"
    assert "WORKER_MAX_CONCURRENCY, now 10" in recommendation.advice
    assert "MaximumConcurrency" in recommendation.rule
    assert "-> 900" in recommendation.evidence


def test_a_backlog_growing_below_the_maximum_asks_for_nothing() -> None:
    obs = observed(visible=900, queue_visible=ramp(100, 880), concurrent_batches=ramp(5, 8))

    assert "raise_max_concurrency" not in ids(obs)


def test_throttles_with_reserved_concurrency_below_the_maximum_say_so() -> None:
    trigger = TriggerSettings(**{**TRIGGER.to_json(), "reserved_concurrency": 2})
    obs = observed(visible=50, throttles_per_s=[0] * 50 + [2] * 10)

    assert ids(obs, trigger) == ["reserved_below_maximum"]
    assert ids(obs, TRIGGER) == []  # no reserved concurrency: no such cause


def test_dead_letters_ask_for_an_inspection_and_a_redrive() -> None:
    [recommendation] = recommend(observed(dead_letters=3), TRIGGER)

    assert recommendation.id == "dead_letters"
    assert "redrive" in recommendation.advice
    assert recommendation.evidence.startswith("3 message(s)")


def test_a_high_error_rate_points_at_the_logs() -> None:
    obs = observed(completed_per_s=flat(1), failed_per_s=flat(0.5))

    assert "high_error_rate" in ids(obs)
    [r] = [r for r in recommend(obs, TRIGGER) if r.id == "high_error_rate"]
    assert "/aws/lambda/app-local-worker" in r.advice


def test_an_old_message_says_the_workers_do_not_keep_up() -> None:
    obs = observed(visible=5, oldest_message_age=[None] * 59 + [75])

    assert ids(obs) == ["oldest_message_age"]


def test_cold_starts_long_against_latency_are_named() -> None:
    slow_init = observed(
        cold_starts=[0] * 50 + [3] + [0] * 9,
        init_duration_ms=[None] * 50 + [400] + [None] * 9,
        latency_p50=flat(300),
    )
    quick_init = observed(
        cold_starts=[0] * 50 + [3] + [0] * 9,
        init_duration_ms=[None] * 50 + [40] + [None] * 9,
        latency_p50=flat(300),
    )

    assert ids(slow_init) == ["cold_starts"]
    assert ids(quick_init) == []


def test_batches_that_rose_in_the_last_seconds_are_scaling_up_even_at_the_maximum() -> None:
    obs = observed(
        visible=400,
        queue_visible=ramp(0, 380),
        accepted_per_s=flat(150),
        concurrent_batches=[0] * 55 + [5, 5, 10, 10, 10],
    )

    state = describe_state(obs, TRIGGER)

    assert state.name == "scaling_up"
    assert "10 of 10 batches at once, up from 0 in the last 10 s" in state.detail


def test_a_flicker_of_one_batch_at_the_maximum_is_not_scaling_up() -> None:
    obs = observed(
        visible=400,
        queue_visible=flat(400),
        accepted_per_s=flat(100),
        concurrent_batches=[9, 10] * 30,
    )

    assert describe_state(obs, TRIGGER).name == "at_maximum"


def test_a_backlog_that_does_not_fall_is_not_draining_when_nothing_arrives() -> None:
    # e.g. the trigger disabled: nothing consumes, so nothing drains
    obs = observed(visible=300, queue_visible=flat(300), accepted_per_s=flat(0))

    assert describe_state(obs, TRIGGER).name == "scaling_up"


def test_at_the_maximum_for_longer_than_the_rise_is_at_maximum_again() -> None:
    obs = observed(
        visible=400,
        queue_visible=flat(400),
        accepted_per_s=flat(100),
        concurrent_batches=[5] * 45 + [10] * 15,
    )

    assert describe_state(obs, TRIGGER).name == "at_maximum"
