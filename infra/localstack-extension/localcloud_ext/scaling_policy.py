"""How many batches an SQS event source mapping runs at once, after AWS's scaling behaviour.

AWS (Lambda developer guide, "services-sqs-scaling"): when messages arrive, a mapping starts with
5 concurrent batches; while messages remain it adds up to 300 concurrent invocations a minute, up
to the mapping's MaximumConcurrency (2-1,000; 1,000 when unset); when traffic drops it scales back.
Throttles and function errors slow it down; throttled batches are retried with backoff until the
messages' visibility timeout would run out, so nothing is lost.

Pure logic: no LocalStack, no threads, no clock of its own. The caller passes `now` (seconds, any
monotonic origin), so the policy can be driven by a simulated clock in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from localcloud_ext.contract import ESM_SCALE_UP_PER_MINUTE

AWS_INITIAL_CONCURRENCY = 5
AWS_MAXIMUM_CONCURRENCY_PER_MAPPING = 1000
MINIMUM_MAXIMUM_CONCURRENCY = 2
# One poller keeps polling an idle queue, so that arriving messages are seen.
IDLE_CONCURRENCY = 1
# After a throttle or a failed batch, no scaling up for this long.
SLOW_DOWN_SECONDS = 1.0
THROTTLE_FIRST_RETRY_SECONDS = 0.05
THROTTLE_LONGEST_RETRY_SECONDS = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class ScalingLimits:
    maximum: int
    initial: int
    scale_up_per_minute: float
    idle: int = IDLE_CONCURRENCY

    @classmethod
    def for_mapping(
        cls,
        maximum_concurrency: int | None,
        scale_up_per_minute: float = ESM_SCALE_UP_PER_MINUTE.default,
    ) -> ScalingLimits:
        """`maximum_concurrency` is the mapping's ScalingConfig.MaximumConcurrency (None: unset)."""
        maximum = maximum_concurrency or AWS_MAXIMUM_CONCURRENCY_PER_MAPPING
        if not MINIMUM_MAXIMUM_CONCURRENCY <= maximum <= AWS_MAXIMUM_CONCURRENCY_PER_MAPPING:
            raise ValueError(
                f"MaximumConcurrency must be from {MINIMUM_MAXIMUM_CONCURRENCY} to "
                f"{AWS_MAXIMUM_CONCURRENCY_PER_MAPPING}, not {maximum}"
            )
        if scale_up_per_minute <= 0:
            raise ValueError(f"scale-up rate must be above 0, not {scale_up_per_minute}")
        return cls(
            maximum=maximum,
            initial=min(AWS_INITIAL_CONCURRENCY, maximum),
            scale_up_per_minute=scale_up_per_minute,
        )


class ScalingPolicy:
    """The number of batches the mapping may have in flight (`target`), fed with what its polls
    find. Signals: the latest poll filled its batch means a backlog, until a poll comes back
    short or empty; an empty poll also retires its poller; a throttle means Lambda has no room
    (one poller fewer, and a pause); a failed batch means a pause."""

    def __init__(self, limits: ScalingLimits, now: float) -> None:
        self.limits = limits
        self.target = limits.idle
        self._last_tick = now
        self._scale_up_credit = 0.0  # fractions of a batch earned at the scale-up rate
        self._backlog = False
        self._slow_until = now

    def messages_received(self, now: float, *, full: bool) -> None:
        """A poll came back with messages; `full` if it filled the batch."""
        if self.target < self.limits.initial:
            # Messages arrived at an idle mapping: start with the initial concurrency at once.
            self.target = self.limits.initial
            self._scale_up_credit = 0.0
        self._backlog = full

    def poll_came_back_empty(self, now: float, *, active: int, in_flight: int) -> None:
        """The queue had nothing: the backlog is over. One poller fewer, and none beyond the
        `active` ones (running a batch or polling, the one that found nothing included): idle
        pollers wait on the queue as a long poll does, so they would not poll again, one by
        one, to bring the target down. Never fewer than the `in_flight` batches and an idle
        poller besides them: AWS's pollers keep polling while its invocations run, so messages
        that arrive during a long batch start batches of their own. (Without that floor, the
        first batch of a spike, taken by the idle poller, left its four new siblings an empty
        queue; they retired one by one, and 9,990 messages then waited 50 s for that batch.)"""
        self._backlog = False
        floor = min(in_flight + self.limits.idle, self.limits.maximum)  # maximum >= idle
        self.target = max(floor, min(self.target - 1, active))

    def throttled(self, now: float) -> None:
        self.target = max(self.limits.idle, self.target - 1)
        self._slow_down(now)

    def batch_failed(self, now: float) -> None:
        self._slow_down(now)

    def tick(self, now: float) -> int:
        """Scale up while the backlog persists. Returns the target."""
        elapsed = max(0.0, now - self._last_tick)
        self._last_tick = now
        if self._backlog and now >= self._slow_until and self.target < self.limits.maximum:
            self._scale_up_credit += elapsed * self.limits.scale_up_per_minute / 60.0
            whole = int(self._scale_up_credit + 1e-9)  # ten ticks of 0.1 s make a whole second
            self.target = min(self.limits.maximum, self.target + whole)
            self._scale_up_credit -= whole
        else:
            self._scale_up_credit = 0.0
        return self.target

    def _slow_down(self, now: float) -> None:
        self._slow_until = now + SLOW_DOWN_SECONDS
        self._scale_up_credit = 0.0


class Throttled(Exception):
    """Lambda kept refusing the batch until its messages' visibility timeout would run out."""


def retry_while_throttled(
    call: Callable[[], T],
    *,
    is_throttle: Callable[[Exception], bool],
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_throttle: Callable[[], None],
) -> T:
    """Run `call`, retrying throttles with exponential backoff while a retry could still start
    before `deadline` (the last moment an invocation may start and still finish within the
    messages' visibility timeout). Past it, raise `Throttled`: the messages become visible again
    and another poll takes them, so a throttle delays them but never loses them."""
    delay = THROTTLE_FIRST_RETRY_SECONDS
    while True:
        try:
            return call()
        except Exception as error:
            if not is_throttle(error):
                raise
            on_throttle()
            if clock() + delay > deadline:
                raise Throttled("throttled until the visibility timeout ran short") from error
            sleep(delay)
            delay = min(delay * 2, THROTTLE_LONGEST_RETRY_SECONDS)
