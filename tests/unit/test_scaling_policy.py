"""The SQS mapping's scaling policy, driven by a simulated clock and a simulated queue."""

from __future__ import annotations

import pytest

from localcloud_ext.scaling_policy import (
    SLOW_DOWN_SECONDS,
    THROTTLE_LONGEST_RETRY_SECONDS,
    ScalingLimits,
    ScalingPolicy,
    Throttled,
    retry_while_throttled,
)

TICK = 0.1


def policy(maximum: int | None = 10, per_minute: float = 300.0) -> ScalingPolicy:
    return ScalingPolicy(ScalingLimits.for_mapping(maximum, per_minute), now=0.0)


def backlog_for(p: ScalingPolicy, start: float, seconds: float) -> float:
    """Every tick, full batches and no empty poll: the backlog persists."""
    now = start
    while now < start + seconds - 1e-9:
        now += TICK
        p.messages_received(now, full=True)
        p.tick(now)
    return now


def test_an_idle_mapping_keeps_one_poller_and_starts_with_five_when_messages_arrive() -> None:
    p = policy(maximum=10)
    assert p.tick(1.0) == 1
    p.messages_received(1.05, full=False)
    assert p.target == 5


def test_a_maximum_below_five_is_the_starting_concurrency() -> None:
    p = policy(maximum=3)
    p.messages_received(0.1, full=True)
    assert p.target == 3
    backlog_for(p, 0.1, 5.0)
    assert p.target == 3


def test_while_the_backlog_lasts_concurrency_grows_at_the_configured_rate_up_to_the_maximum() -> (
    None
):
    p = policy(maximum=1000, per_minute=300.0)  # 5 a second
    p.messages_received(0.0, full=True)
    now = backlog_for(p, 0.0, 2.0)
    assert p.target == 5 + 10  # 2 s at 5/s
    backlog_for(p, now, 1000.0)
    assert p.target == 1000


def test_a_faster_local_rate_has_the_same_shape() -> None:
    p = policy(maximum=100, per_minute=3000.0)  # 50 a second
    p.messages_received(0.0, full=True)
    backlog_for(p, 0.0, 1.0)
    assert p.target == 55
    backlog_for(p, 1.0, 1.0)
    assert p.target == 100


def test_partial_batches_alone_do_not_add_concurrency() -> None:
    p = policy(maximum=10)
    p.messages_received(0.0, full=False)
    now = 0.0
    for _ in range(50):
        now += TICK
        p.messages_received(now, full=False)
        p.tick(now)
    assert p.target == 5


def test_the_backlog_ends_with_a_short_or_empty_poll() -> None:
    p = policy(maximum=20)
    p.messages_received(0.0, full=True)
    p.messages_received(0.05, full=False)
    backlog_for_seconds_without_polls(p, 0.05, 3.0)
    assert p.target == 5
    p.messages_received(3.1, full=True)
    p.poll_came_back_empty(3.15, active=5, in_flight=3)
    backlog_for_seconds_without_polls(p, 3.15, 3.0)
    assert p.target == 4


def test_busy_pollers_keep_the_backlog_growing_between_polls() -> None:
    p = policy(maximum=20)
    p.messages_received(0.0, full=True)  # then every poller is busy for seconds
    backlog_for_seconds_without_polls(p, 0.0, 2.0)
    assert p.target == 15


def backlog_for_seconds_without_polls(p: ScalingPolicy, start: float, seconds: float) -> None:
    now = start
    while now < start + seconds - 1e-9:
        now += TICK
        p.tick(now)


def test_empty_polls_scale_back_down_one_poller_each_to_a_single_idle_poller() -> None:
    p = policy(maximum=10)
    p.messages_received(0.0, full=True)
    backlog_for(p, 0.0, 5.0)
    assert p.target == 10
    for expected in range(9, 0, -1):
        p.poll_came_back_empty(6.0, active=10, in_flight=0)
        assert p.target == expected
    p.poll_came_back_empty(6.0, active=1, in_flight=0)
    assert p.target == 1


def test_an_empty_poll_brings_the_target_down_to_the_batches_in_flight_and_one_poller() -> None:
    p = policy(maximum=1000, per_minute=6000.0)
    p.messages_received(0.0, full=True)
    backlog_for(p, 0.0, 3.0)
    assert p.target == 305
    # the backlog ended: 100 batches still run, and this poller found nothing
    p.poll_came_back_empty(3.1, active=101, in_flight=100)
    assert p.target == 101
    p.poll_came_back_empty(3.2, active=1, in_flight=0)
    assert p.target == 1


def test_empty_polls_leave_a_poller_beside_the_batches_in_flight() -> None:
    # A spike's first batch went to the idle poller; its four new siblings find the queue
    # empty, one after another, before the rest of the spike arrives.
    p = policy(maximum=1000)
    p.messages_received(0.0, full=True)
    assert p.target == 5
    for active in (5, 4, 3, 2):
        p.poll_came_back_empty(0.1, active=active, in_flight=1)
    assert p.target == 2  # the batch and one poller waiting on the queue


def test_at_the_maximum_no_poller_waits_beside_the_batches() -> None:
    p = policy(maximum=10)
    p.messages_received(0.0, full=True)
    backlog_for(p, 0.0, 5.0)
    p.poll_came_back_empty(6.0, active=10, in_flight=10)
    assert p.target == 10


def test_a_throttle_removes_a_poller_and_pauses_the_growth() -> None:
    p = policy(maximum=20)
    p.messages_received(0.0, full=True)
    now = backlog_for(p, 0.0, 1.0)
    assert p.target == 10
    p.throttled(now)
    assert p.target == 9
    now = backlog_for(p, now, SLOW_DOWN_SECONDS - TICK)
    assert p.target == 9
    backlog_for(p, now, 1.0)
    assert p.target > 9


def test_a_failed_batch_pauses_the_growth_without_removing_a_poller() -> None:
    p = policy(maximum=20)
    p.messages_received(0.0, full=True)
    p.batch_failed(0.0)
    backlog_for(p, 0.0, SLOW_DOWN_SECONDS - TICK)
    assert p.target == 5


@pytest.mark.parametrize("maximum", [1, 1001, -2])
def test_maximum_concurrency_outside_2_to_1000_is_refused(maximum: int) -> None:
    with pytest.raises(ValueError, match="MaximumConcurrency must be from 2 to 1000"):
        ScalingLimits.for_mapping(maximum)


def test_an_unset_maximum_concurrency_means_aws_s_1000_per_mapping() -> None:
    assert ScalingLimits.for_mapping(None).maximum == 1000


class SimulatedMapping:
    """A queue, pollers that each take one batch of `batch_size` that runs `batch_seconds`,
    and the policy deciding how many pollers there are. Step by step, on a simulated clock."""

    def __init__(self, p: ScalingPolicy, batch_size: int, batch_seconds: float) -> None:
        self.policy = p
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.queue = 0
        self.busy_until: list[float] = []  # one entry per poller; 0 = free
        self.max_in_flight = 0
        self.timeline: list[tuple[float, int, int]] = []  # (time, target, in flight)

    def in_flight(self, now: float) -> int:
        return sum(1 for until in self.busy_until if until > now)

    def step(self, now: float) -> None:
        target = self.policy.tick(now)
        while len(self.busy_until) < target:
            self.busy_until.append(0.0)
        for index, busy_until in enumerate(list(self.busy_until)):
            if index >= len(self.busy_until) or busy_until > now:
                continue
            if len(self.busy_until) > self.policy.target:  # a free poller retires
                self.busy_until.pop(index)
                continue
            taken = min(self.batch_size, self.queue)
            self.queue -= taken
            if taken:
                self.policy.messages_received(now, full=taken == self.batch_size)
                self.busy_until[index] = now + self.batch_seconds
            else:
                self.policy.poll_came_back_empty(
                    now, active=self.in_flight(now) + 1, in_flight=self.in_flight(now)
                )
        in_flight = self.in_flight(now)
        self.max_in_flight = max(self.max_in_flight, in_flight)
        self.timeline.append((now, self.policy.target, in_flight))


def test_a_spike_rises_to_the_maximum_and_falls_back_without_exceeding_it() -> None:
    mapping = SimulatedMapping(policy(maximum=10), batch_size=10, batch_seconds=0.5)
    now = 0.0
    for _ in range(20):  # idle first
        now += TICK
        mapping.step(now)
    assert mapping.policy.target == 1
    mapping.queue = 2000
    spike_at = now
    for _ in range(400):
        now += TICK
        mapping.step(now)
    assert mapping.queue == 0
    targets_after_spike = [target for at, target, _ in mapping.timeline if at > spike_at]
    assert targets_after_spike[0] == 5  # the first tick after the messages arrived
    assert max(targets_after_spike) == 10
    assert mapping.max_in_flight == 10
    reached = next(at for at, target, _ in mapping.timeline if target == 10)
    assert reached - spike_at <= 1.5  # 5 -> 10 at 5 a second
    assert mapping.timeline[-1][1] == 1  # back to one idle poller
    in_flight_series = [in_flight for *_, in_flight in mapping.timeline]
    assert all(in_flight <= 10 for in_flight in in_flight_series)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ThrottleError(Exception):
    pass


def test_throttled_calls_are_retried_with_growing_pauses_until_they_go_through() -> None:
    clock = Clock()
    outcomes: list[object] = [ThrottleError(), ThrottleError(), ThrottleError(), "done"]
    throttles: list[float] = []

    def call() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = retry_while_throttled(
        call,
        is_throttle=lambda error: isinstance(error, ThrottleError),
        deadline=100.0,
        clock=clock.time,
        sleep=clock.sleep,
        on_throttle=lambda: throttles.append(clock.now),
    )
    assert result == "done"
    assert len(throttles) == 3
    assert clock.sleeps == [0.05, 0.1, 0.2]


def test_throttles_give_up_before_the_visibility_deadline_and_say_so() -> None:
    clock = Clock()

    def always_throttled() -> None:
        raise ThrottleError()

    with pytest.raises(Throttled):
        retry_while_throttled(
            always_throttled,
            is_throttle=lambda error: isinstance(error, ThrottleError),
            deadline=5.0,
            clock=clock.time,
            sleep=clock.sleep,
            on_throttle=lambda: None,
        )
    assert clock.now <= 5.0
    assert max(clock.sleeps) == THROTTLE_LONGEST_RETRY_SECONDS


def test_other_errors_are_not_retried() -> None:
    clock = Clock()
    calls = 0

    def fails() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("function error")

    with pytest.raises(RuntimeError):
        retry_while_throttled(
            fails,
            is_throttle=lambda error: isinstance(error, ThrottleError),
            deadline=100.0,
            clock=clock.time,
            sleep=clock.sleep,
            on_throttle=lambda: None,
        )
    assert calls == 1


def test_at_aws_s_scale_a_spike_starts_at_5_adds_300_a_minute_caps_at_1000_and_falls() -> None:
    # GIVEN a mapping with MaximumConcurrency unset (1,000) at AWS's rate, and a backlog far
    # larger than 1,000 batches can take in the time (1 s batches of 10)
    mapping = SimulatedMapping(
        policy(maximum=None, per_minute=300.0), batch_size=10, batch_seconds=1
    )
    mapping.queue = 10_000_000
    now = 0.0
    # WHEN it runs for 4 simulated minutes
    while now < 240.0 - 1e-9:
        now += TICK
        mapping.step(now)
    targets = {round(at, 1): target for at, target, _ in mapping.timeline}
    # THEN it started at 5, grew 300 a minute (5 a second), and held at 1,000
    assert mapping.timeline[0][1] == 5
    assert targets[60.0] == pytest.approx(5 + 300, abs=1)  # the first tick finds it idle
    assert targets[120.0] == pytest.approx(5 + 600, abs=1)
    assert targets[180.0] == pytest.approx(5 + 900, abs=1)
    reached = next(at for at, target, _ in mapping.timeline if target == 1000)
    assert reached == pytest.approx((1000 - 5) / 5, abs=0.2)  # 199 s
    assert max(target for _, target, _ in mapping.timeline) == 1000
    assert mapping.max_in_flight == 1000
    # WHEN the backlog ends
    mapping.queue = 0
    end = now
    while now < end + 10.0 - 1e-9:
        now += TICK
        mapping.step(now)
    # THEN each empty poll retires its poller, back to the one idle poller
    assert mapping.timeline[-1][1] == 1
    falling = [target for at, target, _ in mapping.timeline if at > end]
    assert falling == sorted(falling, reverse=True)


def test_a_maximum_concurrency_below_1000_caps_the_same_ramp() -> None:
    mapping = SimulatedMapping(
        policy(maximum=400, per_minute=300.0), batch_size=10, batch_seconds=1
    )
    mapping.queue = 10_000_000
    now = 0.0
    while now < 120.0 - 1e-9:
        now += TICK
        mapping.step(now)
    assert max(target for _, target, _ in mapping.timeline) == 400
    reached = next(at for at, target, _ in mapping.timeline if target == 400)
    assert reached == pytest.approx((400 - 5) / 5, abs=0.2)  # 79 s
