"""The dashboard's words: what the system is doing (one state) and what a user could change
(recommendations), each derived from the series by a rule stated beside it. Pure functions of
what /metrics read: the series (aligned per period, oldest first), the queues' depths now and
the trigger's settings."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from chalicelib.model import QueueDepth

StateName = Literal["idle", "scaling_up", "at_maximum", "draining", "throttled", "failing"]

TREND_SECONDS = 5  # how far back "rising" and "falling" look
# "Scaling up" while batches at once rose in the last RISE_SECONDS: a climb takes a few
# seconds, and a page polling every 2 s through a cold-start storm can be blind for 9 s of it.
RISE_SECONDS = 10
# A rise, not a flicker: by at least 2 batches, and a fifth of what runs now.
RISE_MIN_BATCHES = 2
RISE_SHARE = 0.2
THROTTLE_SECONDS = 10
FAILING_SECONDS = 30
FAILING_RATE = 0.2  # share of outcomes that failed or were retried
FAILING_MIN_FAILURES = 5
FAILING_MIN_FUNCTION_ERRORS = 3
BACKLOG_GROWTH_SECONDS = 30
OLDEST_AGE_LIMIT_SECONDS = 60
ERROR_RATE_SECONDS = 60
ERROR_RATE_LIMIT = 0.1
ERROR_RATE_MIN_OUTCOMES = 10
COLD_START_SECONDS = 60
COLD_START_SHARE = 0.5  # init duration against the end-to-end p50


@dataclass(frozen=True)
class TriggerSettings:
    """The SQS trigger and what bounds it, as the platform reports them (None: not set)."""

    worker_function: str
    event_source_mapping: str | None
    mapping_state: str | None
    batch_size: int | None
    batching_window_seconds: int | None
    maximum_concurrency: int | None
    reserved_concurrency: int | None
    visibility_timeout_seconds: int | None
    max_receive_count: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Observed:
    period: int
    series: Mapping[str, Sequence[float | None]]
    queue: QueueDepth
    dead_letter_queue: QueueDepth

    def recent(self, key: str, seconds: float) -> list[float]:
        """The series' values of the last `seconds` (at least one period), None left out."""
        periods = max(1, math.ceil(seconds / self.period))
        return [v for v in self.series.get(key, ())[-periods:] if v is not None]

    def total(self, key: str, seconds: float) -> float:
        """How many events a per-second series counts in the last `seconds`."""
        return sum(self.recent(key, seconds)) * self.period

    def latest(self, key: str, seconds: float = 3) -> float | None:
        values = self.recent(key, seconds)
        return values[-1] if values else None

    def back(self, key: str, seconds: float) -> float | None:
        """The value about `seconds` ago (the last one at or before then)."""
        periods = max(1, math.ceil(seconds / self.period))
        earlier = [v for v in self.series.get(key, ())[:-periods] if v is not None]
        return earlier[-1] if earlier else None

    def _batches_key(self) -> str:
        """The trigger's own gauge where there is one, else the worker's concurrent executions
        (the same thing when the queue is its only trigger)."""
        if self.latest("concurrent_batches") is not None:
            return "concurrent_batches"
        return "concurrent_executions"

    def batches(self) -> float:
        """Batches running now."""
        return self.latest(self._batches_key()) or 0

    def fewest_batches(self, seconds: float) -> float:
        """The fewest batches at once in the last `seconds`."""
        return min(self.recent(self._batches_key(), seconds), default=self.batches())


@dataclass(frozen=True)
class State:
    name: StateName
    headline: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    id: str
    severity: Literal["info", "warning"]
    title: str
    advice: str
    rule: str
    evidence: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _failures(obs: Observed, seconds: float) -> tuple[float, float]:
    """(records failed or retried, all record outcomes) in the last `seconds`."""
    failed = obs.total("failed_per_s", seconds) + obs.total("retried_per_s", seconds)
    return failed, failed + obs.total("completed_per_s", seconds)


def describe_state(obs: Observed, trigger: TriggerSettings) -> State:
    """The first that holds of: failing, throttled, idle, scaling up (batches at once rose in
    the last RISE_SECONDS), draining, at maximum, scaling up (a backlog and room to grow)."""
    return _failing(obs) or _throttled(obs, trigger) or _scaling(obs, trigger)


def _failing(obs: Observed) -> State | None:
    failed, outcomes = _failures(obs, FAILING_SECONDS)
    function_errors = obs.total("errors_per_s", FAILING_SECONDS)
    if not (failed >= FAILING_MIN_FAILURES and failed / outcomes >= FAILING_RATE) and not (
        function_errors >= FAILING_MIN_FUNCTION_ERRORS
    ):
        return None
    share = f"{failed / outcomes:.0%} of {outcomes:.0f} records" if outcomes else "records"
    return State(
        "failing",
        "Failing",
        f"{share} failed or were retried in the last {FAILING_SECONDS} s; "
        f"{function_errors:.0f} function errors",
    )


def _throttled(obs: Observed, trigger: TriggerSettings) -> State | None:
    throttles = obs.total("throttles_per_s", THROTTLE_SECONDS)
    if throttles == 0:
        return None
    reserved = trigger.reserved_concurrency
    return State(
        "throttled",
        "Throttled",
        f"{throttles:.0f} throttled invocations in the last {THROTTLE_SECONDS} s; "
        f"reserved concurrency {reserved if reserved is not None else 'not set'}; "
        f"{_waiting(obs)}",
    )


def _waiting(obs: Observed) -> str:
    return f"{obs.queue.visible} messages waiting, {obs.queue.in_flight} in flight"


def _scaling(obs: Observed, trigger: TriggerSettings) -> State:
    backlog = obs.queue.visible + obs.queue.in_flight
    batches = obs.batches()
    if backlog == 0 and batches == 0:
        return State("idle", "Idle", "No task waiting, no batch running")
    limit = trigger.maximum_concurrency
    of_limit = f" of {limit}" if limit else ""
    lowest = obs.fewest_batches(RISE_SECONDS)
    if backlog and batches - lowest >= max(RISE_MIN_BATCHES, RISE_SHARE * batches):
        return State(
            "scaling_up",
            "Scaling up",
            f"{batches:.0f}{of_limit} batches at once, up from {lowest:.0f} in the last "
            f"{RISE_SECONDS} s; {_waiting(obs)}",
        )
    earlier = obs.back("queue_visible", TREND_SECONDS)
    if backlog == 0 or (earlier is not None and obs.queue.visible < earlier):
        trend = f", down from {earlier:.0f} {TREND_SECONDS} s ago" if backlog and earlier else ""
        return State(
            "draining",
            "Draining",
            f"{_waiting(obs)}{trend}; {batches:.0f}{of_limit} batches at once",
        )
    if limit is not None and batches >= limit:
        return State(
            "at_maximum",
            "At maximum",
            f"{batches:.0f} batches at once = MaximumConcurrency; {_waiting(obs)}",
        )
    return State(
        "scaling_up", "Scaling up", f"{batches:.0f}{of_limit} batches at once; {_waiting(obs)}"
    )


def recommend(obs: Observed, trigger: TriggerSettings) -> list[Recommendation]:
    """Every recommendation whose rule holds now, most urgent first."""
    found = [
        rule(obs, trigger)
        for rule in (
            _backlog_at_maximum,
            _throttled_below_maximum,
            _dead_letters,
            _error_rate,
            _oldest_message,
            _cold_starts,
        )
    ]
    return [r for r in found if r is not None]


def _backlog_at_maximum(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    limit = trigger.maximum_concurrency
    earlier = obs.back("queue_visible", BACKLOG_GROWTH_SECONDS)
    batches = obs.recent("concurrent_batches", BACKLOG_GROWTH_SECONDS) or obs.recent(
        "concurrent_executions", BACKLOG_GROWTH_SECONDS
    )
    if limit is None or earlier is None or not batches:
        return None
    at_limit = sum(1 for b in batches if b >= limit) / len(batches)
    if obs.queue.visible <= earlier or at_limit < 0.5:
        return None
    return Recommendation(
        "raise_max_concurrency",
        "warning",
        "Backlog growing at MaximumConcurrency",
        "The trigger runs as many batches as it may and the queue still grows: raise "
        f"MaximumConcurrency (WORKER_MAX_CONCURRENCY, now {limit}, up to 1000) or BatchSize "
        f"(WORKER_BATCH_SIZE, now {trigger.batch_size}) in .chalice/config.json, then "
        "scripts/deploy. Keep reserved concurrency above MaximumConcurrency.",
        f"queue visible rose over the last {BACKLOG_GROWTH_SECONDS} s while concurrent "
        "batches were at MaximumConcurrency at least half the time",
        f"visible {earlier:.0f} -> {obs.queue.visible}; at {limit} batches {at_limit:.0%} "
        "of the time",
    )


def _throttled_below_maximum(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    throttles = obs.total("throttles_per_s", ERROR_RATE_SECONDS)
    reserved, limit = trigger.reserved_concurrency, trigger.maximum_concurrency
    if throttles == 0 or reserved is None or limit is None or reserved >= limit:
        return None
    return Recommendation(
        "reserved_below_maximum",
        "warning",
        "Throttled: reserved concurrency is below MaximumConcurrency",
        f"The trigger may run {limit} batches, but the worker may run only {reserved} at once; "
        "the rest are throttled and retried. Raise the worker's reserved concurrency above "
        f"{limit} (aws lambda put-function-concurrency --function-name "
        f"{trigger.worker_function}) or lower MaximumConcurrency to {reserved}.",
        f"throttles in the last {ERROR_RATE_SECONDS} s > 0 while reserved concurrency < "
        "MaximumConcurrency",
        f"{throttles:.0f} throttles; reserved {reserved} < maximum {limit}",
    )


def _dead_letters(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    waiting = obs.dead_letter_queue.visible + obs.dead_letter_queue.in_flight
    if waiting == 0:
        return None
    return Recommendation(
        "dead_letters",
        "warning",
        "Dead-letter queue not empty",
        "Inspect the failed tasks first (GET /tasks/ID has each one's error; awslocal sqs "
        "receive-message on the dead-letter queue shows the messages), fix the cause, then "
        "redrive them to the task queue (aws sqs start-message-move-task --source-arn "
        "DLQ_ARN).",
        "dead-letter queue depth > 0",
        f"{waiting} message(s) after {trigger.max_receive_count or '?'} receives each",
    )


def _error_rate(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    failed, outcomes = _failures(obs, ERROR_RATE_SECONDS)
    if outcomes < ERROR_RATE_MIN_OUTCOMES or failed / outcomes < ERROR_RATE_LIMIT:
        return None
    return Recommendation(
        "high_error_rate",
        "warning",
        "Many tasks fail",
        "Read the worker's log for the errors (awslocal logs tail "
        f"/aws/lambda/{trigger.worker_function} --since 10m; every line carries the task id "
        "and correlation id). Failed records come back after the visibility timeout "
        f"({trigger.visibility_timeout_seconds} s).",
        f"failed or retried records >= {ERROR_RATE_LIMIT:.0%} of at least "
        f"{ERROR_RATE_MIN_OUTCOMES} outcomes in the last {ERROR_RATE_SECONDS} s",
        f"{failed:.0f} of {outcomes:.0f} records ({failed / outcomes:.0%})",
    )


def _oldest_message(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    age = obs.latest("oldest_message_age", 5)
    if age is None or age <= OLDEST_AGE_LIMIT_SECONDS:
        return None
    return Recommendation(
        "oldest_message_age",
        "warning",
        "Tasks wait long in the queue",
        "The workers are not keeping up, or not consuming (is the trigger Enabled?). Raise "
        "MaximumConcurrency or BatchSize, or make tasks shorter.",
        f"age of the oldest message > {OLDEST_AGE_LIMIT_SECONDS} s",
        f"oldest message {age:.0f} s old; trigger {trigger.mapping_state or 'state unknown'}",
    )


def _cold_starts(obs: Observed, trigger: TriggerSettings) -> Recommendation | None:
    starts = sum(obs.recent("cold_starts", COLD_START_SECONDS))  # a count per period
    init = obs.recent("init_duration_ms", COLD_START_SECONDS)
    p50 = obs.recent("latency_p50", COLD_START_SECONDS)
    if starts < 1 or not init or not p50:
        return None
    init_ms, latency_ms = statistics.fmean(init), statistics.median(p50)
    if init_ms < COLD_START_SHARE * latency_ms:
        return None
    return Recommendation(
        "cold_starts",
        "info",
        "Cold starts weigh on latency",
        "New execution environments spend their init before their first batch. Do less at "
        "import (clients are built lazily already), keep BatchSize large enough that each "
        "environment serves many tasks, or on AWS use provisioned concurrency or SnapStart.",
        f"cold starts in the last {COLD_START_SECONDS} s, and their init duration >= "
        f"{COLD_START_SHARE:.0%} of the end-to-end p50",
        f"{starts:.0f} cold starts, init {init_ms:.0f} ms avg, end-to-end p50 {latency_ms:.0f} ms",
    )
