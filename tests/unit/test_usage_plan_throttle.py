"""Usage plan throttling as the local cloud emulates it (localcloud_ext/usage_plans.py): token
buckets per API key, and which plans' limits apply to a request."""

from __future__ import annotations

from typing import Any

import pytest

from localcloud_ext.usage_plans import (
    Limit,
    TokenBucket,
    UsagePlanThrottle,
    applicable_limits,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_the_burst_through_then_refuses() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, now=0.0)

    taken = [bucket.take(0.0) for _ in range(4)]

    assert taken == [True, True, True, False]


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)

    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True  # one token after 0.5 s at 2/s
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at 3


def test_a_steady_rate_under_the_limit_is_never_refused() -> None:
    bucket = TokenBucket(rate=100.0, burst=200, now=0.0)

    admitted = [bucket.take(i * 0.02) for i in range(1000)]  # 50 requests/s for 20 s

    assert all(admitted)


def test_over_the_rate_about_the_rate_gets_through() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)

    admitted = sum(bucket.take(i * 0.01) for i in range(1000))  # 100/s for 10 s

    assert 5 + 10 * 10 - 2 <= admitted <= 5 + 10 * 10


def test_a_burst_of_zero_still_lets_the_rate_through_one_at_a_time() -> None:
    bucket = TokenBucket(rate=1.0, burst=0, now=0.0)

    assert [bucket.take(0.0), bucket.take(0.5), bucket.take(1.0)] == [True, False, True]


def plan(plan_id: str, api: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {"id": plan_id, "apiStages": [{"apiId": api, "stage": stage}], **extra}


def test_only_plans_bound_to_the_stage_and_holding_the_key_apply() -> None:
    plans = [
        plan("p1", "api", "prod", throttle={"rateLimit": 5.0, "burstLimit": 10}),
        plan("p2", "api", "dev", throttle={"rateLimit": 1.0, "burstLimit": 1}),  # other stage
        plan("p3", "other", "prod", throttle={"rateLimit": 1.0, "burstLimit": 1}),  # other API
        plan("p4", "api", "prod", throttle={"rateLimit": 1.0, "burstLimit": 1}),  # other key
        plan("p5", "api", "prod"),  # no throttle
    ]

    limits = applicable_limits(plans, "api", "prod", "/tasks", "POST", lambda p: p != "p4")

    assert limits == [Limit(("p1",), 5.0, 10)]


def test_a_stage_may_throttle_one_method_tighter() -> None:
    stage_entry = {
        "apiId": "api",
        "stage": "prod",
        "throttle": {"/tasks/POST": {"rateLimit": 1.0, "burstLimit": 2}},
    }
    plans = [
        {"id": "p1", "apiStages": [stage_entry], "throttle": {"rateLimit": 50.0, "burstLimit": 100}}
    ]

    on_method = applicable_limits(plans, "api", "prod", "/tasks", "POST", lambda _: True)
    elsewhere = applicable_limits(plans, "api", "prod", "/tasks/batch", "POST", lambda _: True)

    assert on_method == [
        Limit(("p1",), 50.0, 100),
        Limit(("p1", "api", "prod", "/tasks/POST"), 1.0, 2),
    ]
    assert elsewhere == [Limit(("p1",), 50.0, 100)]


def test_each_key_has_its_own_bucket() -> None:
    throttle = UsagePlanThrottle(FakeClock())
    limit = [Limit(("p1",), 1.0, 1)]

    assert throttle.admit("key-a", limit) is True
    assert throttle.admit("key-a", limit) is False
    assert throttle.admit("key-b", limit) is True


def test_a_changed_limit_starts_a_fresh_bucket() -> None:
    throttle = UsagePlanThrottle(FakeClock())
    assert throttle.admit("k", [Limit(("p1",), 1.0, 1)]) is True
    assert throttle.admit("k", [Limit(("p1",), 1.0, 1)]) is False

    assert throttle.admit("k", [Limit(("p1",), 100.0, 200)]) is True


@pytest.mark.parametrize("seconds", [0.0, 0.5])
def test_time_passing_refills_the_shared_bucket(seconds: float) -> None:
    clock = FakeClock()
    throttle = UsagePlanThrottle(clock)
    limit = [Limit(("p1",), 2.0, 1)]
    throttle.admit("k", limit)

    clock.now = seconds

    assert throttle.admit("k", limit) is (seconds >= 0.5)


def test_no_limit_admits_everything() -> None:
    throttle = UsagePlanThrottle(FakeClock())

    assert all(throttle.admit("k", []) for _ in range(100))
