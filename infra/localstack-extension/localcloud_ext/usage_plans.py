"""API Gateway usage plan throttling, which LocalStack's open edition stores and never applies.

LocalStack 2026.3 checks a method's `apiKeyRequired` (a missing, unknown or disabled key is a
403) but its `ApiKeyValidationHandler` says "We currently do not support rate limiting or
quota limit": a usage plan's `throttle` is echoed and ignored. AWS meters it with a token
bucket: `burstLimit` requests at once, refilled at `rateLimit` a second, per API key, across
every stage of the plan; a stage's own entry in the plan may throttle one method
(`apiStages[].throttle["/path/METHOD"]`) tighter. A request over the limit is answered
429 `{"message": "Too Many Requests"}` before the integration runs.

This module is the plain logic (buckets, which limits apply to a request); the seam into
LocalStack, `patches.throttle_usage_plans`, runs it right after LocalStack validated the key,
for any REST API. Quotas (requests per day/week/month) are not emulated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

THROTTLED_MESSAGE = "Too Many Requests"  # AWS's body for a throttled request


class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate` a second; a request takes one.
    A burst below 1 (AWS accepts 0) still lets the rate through, one request at a time."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(max(burst, 1))
        self._tokens = self.capacity
        self._updated = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class Limit:
    """One throttle a request is subject to: `scope` names whose requests share its bucket."""

    scope: tuple[str, ...]
    rate: float
    burst: int


def applicable_limits(
    usage_plans: Iterable[Mapping[str, Any]],
    api_id: str,
    stage: str,
    resource_path: str,
    http_method: str,
    plan_has_key: Callable[[str], bool],
) -> list[Limit]:
    """The throttles of the usage plans bound to `api_id`/`stage` that hold the request's key:
    the plan's own (per key, shared by its stages) and the stage's per-method one, if set."""
    limits: list[Limit] = []
    method_key = f"{resource_path}/{http_method}"
    for plan in usage_plans:
        stages = [
            s
            for s in plan.get("apiStages") or []
            if s.get("apiId") == api_id and s.get("stage") == stage
        ]
        if not stages or not plan_has_key(str(plan["id"])):
            continue
        throttle = plan.get("throttle") or {}
        if "rateLimit" in throttle:
            limits.append(
                Limit(
                    (str(plan["id"]),),
                    float(throttle["rateLimit"]),
                    int(throttle.get("burstLimit", 0)),
                )
            )
        for entry in stages:
            method = (entry.get("throttle") or {}).get(method_key)
            if method and "rateLimit" in method:
                scope = (str(plan["id"]), api_id, stage, method_key)
                limits.append(
                    Limit(scope, float(method["rateLimit"]), int(method.get("burstLimit", 0)))
                )
    return limits


class UsagePlanThrottle:
    """Every bucket of the running LocalStack, keyed by limit scope and API key. A plan whose
    limits change gets a fresh, full bucket, as an updated plan does on AWS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}

    def admit(self, api_key_id: str, limits: Iterable[Limit]) -> bool:
        """Whether the request fits every limit; it costs a token of each bucket it fits."""
        now = self._clock()
        with self._lock:
            for limit in limits:
                key = (*limit.scope, api_key_id)
                bucket = self._buckets.get(key)
                if bucket is None or (bucket.rate, bucket.capacity) != (
                    limit.rate,
                    float(max(limit.burst, 1)),
                ):
                    bucket = self._buckets[key] = TokenBucket(limit.rate, limit.burst, now)
                if not bucket.take(now):
                    return False
        return True


THROTTLE = UsagePlanThrottle()
