"""The discrete-event model: API -> SQS -> event source mapping -> Lambda -> proxy -> PostgreSQL.

SimPy drives a clock; what moves is batches, not messages, so ten million tasks are a million
events. The rules, each from where this project already keeps it:

* the mapping's ramp is the local cloud's own `ScalingPolicy` (AWS: 5 batches at once when
  messages arrive, +300 a minute while polls come back full, up to MaximumConcurrency; an empty
  poll retires its poller; a throttle removes one and pauses the growth), ticked as the local
  cloud's control loop ticks it; a poller polls again as soon as its batch ends;
* Lambda: one account pool (1,000) shared with the API's function; reserved concurrency takes
  from it; a worker invoke that finds no room is a throttle, its messages stay in the queue;
* a batch takes the calibrated time (`Calibration.batch_seconds`), plus the first-batch delay on
  a new environment; longer than the worker's timeout, it fails and its messages come back after
  the visibility timeout; a failed task comes back after the app's backoff (or the visibility
  timeout), and after maxReceiveCount receives goes to the dead-letter queue;
* PostgreSQL: through the proxy, a batch holds a server connection while its tasks do their
  database work (the calibrated per-task overhead: an upper bound), at most the proxy's 78; past
  that the work is shared among them and slows, and a wait beyond the borrow timeout fails the
  batch. Without the proxy, each environment holds a connection of its own, and one past
  max_connections fails its batch (the app hands it back with backoff);
* the API: API Gateway's default account throttle (10,000 requests/s), and each request holds an
  API function for the calibrated API latency; requests throttled (429) are sent again at once
  (the burst tool retries), and each is counted once.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import simpy

from chalicelib.sqs_queue import SEND_BATCH_LIMIT
from localcloud_ext.batch_threads import CONTROL_TICK_SECONDS, LONG_POLL_SECONDS
from localcloud_ext.contract import ESM_SCALE_UP_PER_MINUTE
from localcloud_ext.scaling_policy import (
    THROTTLE_FIRST_RETRY_SECONDS,
    ScalingLimits,
    ScalingPolicy,
)
from scaling_model import costs
from scaling_model.calibration import Calibration
from scaling_model.stage import StageSettings
from scaling_model.workload import BIN_SECONDS, Workload

# AWS's default API Gateway throttle per account and Region (steady rate).
API_GATEWAY_REQUESTS_PER_SECOND = 10_000
SEND_BATCH_ENTRIES = SEND_BATCH_LIMIT  # SQS's batch calls: 10 entries at most
DEFAULT_LIMIT_SECONDS = 7 * 24 * 3600.0  # a simulated week: a run that long did not drain


@dataclass
class Counters:
    """What the run did, for the result and the bill."""

    batches: int = 0
    done: int = 0
    dead_lettered: int = 0
    attempts_failed: int = 0
    throttles: int = 0
    api_requests: int = 0
    api_throttles: int = 0
    gateway_throttles: int = 0
    api_function_seconds: float = 0.0
    worker_function_seconds: float = 0.0
    environments: int = 0
    receives: int = 0
    empty_receives: int = 0
    deletes: int = 0
    visibility_changes: int = 0
    send_batches: int = 0
    borrow_timeouts: int = 0
    database_refusals: int = 0
    timeouts: int = 0


@dataclass
class SimulationResult:
    stage: StageSettings
    tasks: int
    drained: bool
    drain_seconds: float | None  # the first send -> the last task done or dead-lettered
    simulated_seconds: float
    peak_concurrency: int
    peak_at_seconds: float | None
    concurrency_per_second: list[int]  # the most batches running in each second
    completions_per_second: list[int]
    queue_per_second: list[int]  # visible messages at the end of each second
    arrivals_per_second: list[int]  # tasks enqueued in each second
    peak_database_connections: int  # server side: the proxy's, or the functions' own
    peak_api_concurrency: int
    counters: Counters = field(default_factory=Counters)

    def usage(
        self,
        architecture: costs.Architecture = "x86_64",
        snapstart: bool = True,
        database: costs.Database = "db.t4g.micro",
    ) -> costs.Usage:
        """What the run would use on AWS, for the bill."""
        c, stage = self.counters, self.stage
        return costs.Usage(
            api_requests=c.api_requests,
            api_function_seconds=c.api_function_seconds,
            api_memory_mb=stage.api_memory_mb,
            worker_invocations=c.batches,
            worker_function_seconds=c.worker_function_seconds,
            worker_memory_mb=stage.worker_memory_mb,
            tasks=self.tasks,
            receive_calls=c.receives,
            delete_calls=c.deletes,
            send_calls=c.send_batches,
            visibility_calls=c.visibility_changes,
            new_environments=c.environments,
            seconds=self.drain_seconds or self.simulated_seconds,
            architecture=architecture,
            snapstart=snapstart,
            database=database,
            database_proxy=stage.database_proxy,
        )

    def curve(self, step: int = 10) -> list[tuple[int, int]]:
        """(second, the most batches running in [second, second + step)), every `step` s."""
        values = self.concurrency_per_second
        return [(s, max(values[s : s + step])) for s in range(0, len(values), step)]


def _grow(series: list[int], second: int) -> None:
    if second >= len(series):
        series.extend([0] * (second + 1 - len(series)))


class Model:
    """One run. Pollers are counted, not objects: `threads` (as the local cloud's batch
    threads), of which `waiting` wait on an empty queue and `running` run a batch."""

    def __init__(
        self, stage: StageSettings, calibration: Calibration, work: Workload, limit_seconds: float
    ) -> None:
        self.env = simpy.Environment()
        self.stage, self.calibration, self.work = stage, calibration, work
        self.limit_seconds = limit_seconds
        limits = ScalingLimits.for_mapping(stage.max_concurrency, ESM_SCALE_UP_PER_MINUTE.default)
        self.policy = ScalingPolicy(limits, 0.0)
        self.visible = [0] * (stage.max_receives + 1)  # by receives so far
        self.threads = self.waiting = self.running = 0
        self.idle_environments = 0
        self.connections = 0  # environments holding a direct connection (no proxy)
        self.db_demand = 0.0  # server connections the running batches keep busy
        self.api_concurrency = 0.0
        self.total = work.tasks
        self.final = 0
        self.last_final: float | None = None
        self.waiters: collections.deque[int] = collections.deque()  # long polls, by token
        self.next_token = 0
        self.all_final = self.env.event()
        self.counters = Counters()
        self.concurrency: list[int] = []
        self.completions: list[int] = []
        self.queue: list[int] = []
        self.arrived: list[int] = []
        self.noted_second = -1
        self.peak: int = 0
        self.peak_at: float | None = None
        self.peak_db, self.peak_api = 0, 0.0

    # --- the account's concurrency ------------------------------------------------------------

    def unreserved(self) -> int:
        reserved = (self.stage.worker_reserved_concurrency or 0) + (
            self.stage.api_reserved_concurrency or 0
        )
        return self.stage.account_concurrency - reserved

    def worker_room(self) -> int:
        if self.stage.worker_reserved_concurrency is not None:
            return self.stage.worker_reserved_concurrency - self.running
        api = 0 if self.stage.api_reserved_concurrency is not None else self.api_concurrency
        return math.floor(self.unreserved() - api) - self.running

    def api_room(self) -> float:
        if self.stage.api_reserved_concurrency is not None:
            return float(self.stage.api_reserved_concurrency)
        worker = 0 if self.stage.worker_reserved_concurrency is not None else self.running
        return float(self.unreserved() - worker)

    # --- the API: arrivals into the queue ------------------------------------------------------

    def api(self) -> simpy.events.ProcessGenerator:
        pending = self.work.arrivals
        latency = self.calibration.api_latency_seconds
        per_request = self.work.tasks_per_request
        carried = 0  # tasks of throttled requests: the client sends them again, next bin
        index = 0
        while index < len(pending) or carried:
            now = self.env.now
            fresh = 0
            while index < len(pending) and pending[index][0] <= now + 1e-9:
                fresh += pending[index][1]
                index += 1
            tasks = carried + fresh
            requests = math.ceil(tasks / per_request)
            gateway = API_GATEWAY_REQUESTS_PER_SECOND * BIN_SECONDS
            room = self.api_room() * BIN_SECONDS / latency if latency > 0 else math.inf
            accepted = int(min(requests, gateway, max(0.0, room)))
            refused = min(requests - accepted, math.ceil(fresh / per_request))  # each once
            if refused and room < gateway:
                self.counters.api_throttles += refused  # the API's function had no room
            elif refused:
                self.counters.gateway_throttles += refused  # past API Gateway's rate
            accepted_tasks = min(tasks, accepted * per_request)
            self.counters.api_requests += accepted
            self.counters.api_function_seconds += accepted * latency
            self.counters.send_batches += accepted * math.ceil(per_request / SEND_BATCH_ENTRIES)
            # Little's law: requests arriving over the bin, each held for the latency.
            self.api_concurrency = accepted * latency / BIN_SECONDS
            self.peak_api = max(self.peak_api, self.api_concurrency)
            if accepted_tasks:
                # The queue has a task once the API has sent it, its latency later.
                delay = 0.0 if self.work.at_queue else latency
                self.later(delay, functools.partial(self.enqueue, accepted_tasks))
            carried = tasks - accepted_tasks
            step = pending[index][0] - now if index < len(pending) else BIN_SECONDS
            yield self.env.timeout(BIN_SECONDS if carried else max(BIN_SECONDS, step))
            self.api_concurrency = 0.0

    def enqueue(self, tasks: int) -> None:
        second = int(self.env.now)
        _grow(self.arrived, second)
        self.arrived[second] += tasks
        self.visible[0] += tasks
        self.wake_waiters()

    def wake_waiters(self) -> None:
        """A waiting poller sees arriving messages at once (the long poll)."""
        while self.waiters and sum(self.visible):
            self.waiters.popleft()
            self.waiting -= 1
            self.poll()

    # --- the mapping --------------------------------------------------------------------------

    def control(self) -> simpy.events.ProcessGenerator:
        # The mapping's first poll comes this long after the burst's first message.
        first = self.work.arrivals[0][0] if self.work.arrivals else 0.0
        delay = 0.0 if self.work.at_queue else self.calibration.api_latency_seconds
        yield self.env.timeout(first + delay + self.calibration.startup_seconds)
        while True:
            self.policy.tick(self.env.now)
            while self.threads < self.policy.target:  # an empty poll may lower it meanwhile
                self.threads += 1
                self.poll()
            self.sample()
            yield self.env.timeout(CONTROL_TICK_SECONDS)

    def sample(self) -> None:
        second = int(self.env.now)
        _grow(self.queue, second)
        self.queue[second] = sum(self.visible)

    def take(self, wanted: int) -> list[tuple[int, int]]:
        """Up to `wanted` visible messages, oldest receives first: [(receives so far, n)]."""
        taken = []
        for receives in range(len(self.visible)):
            n = min(wanted, self.visible[receives])
            if n:
                self.visible[receives] -= n
                taken.append((receives, n))
                wanted -= n
            if not wanted:
                break
        return taken

    def poll(self, waited: bool = False) -> None:
        """One thread's receive: a batch, a throttle, or an empty poll."""
        if self.threads > self.policy.target:
            self.threads -= 1  # a surplus thread retires
            return
        visible = sum(self.visible)
        window = self.stage.batching_window_seconds
        if window and visible < self.stage.batch_size and not waited and visible:
            self.later(window, lambda: self.poll(waited=True))  # gather for the window
            return
        if not visible:
            self.wait_on_queue()
            return
        messages = self.take(self.stage.batch_size)
        count = sum(n for _, n in messages)
        self.counters.receives += math.ceil(count / SEND_BATCH_ENTRIES)  # up to 10 a call
        self.policy.messages_received(self.env.now, full=count >= self.stage.batch_size)
        if self.worker_room() <= 0:
            self.counters.throttles += 1
            self.policy.throttled(self.env.now)
            for receives, n in messages:  # still invisible to others; retried shortly
                self.visible[receives] += n
            self.later(THROTTLE_FIRST_RETRY_SECONDS * 2, self.poll)
            return
        self.start_batch(messages, count)

    def wait_on_queue(self) -> None:
        """A long poll: the thread waits for messages (wake_waiters); one that waits the whole
        poll comes back empty, and the mapping may retire it."""
        token = self.next_token
        self.next_token += 1
        self.waiters.append(token)
        self.waiting += 1

        def expired() -> None:
            if not self.waiters or token not in self.waiters:
                return  # woken by a message meanwhile
            self.waiters.remove(token)
            self.counters.receives += 1
            self.counters.empty_receives += 1
            self.policy.poll_came_back_empty(
                self.env.now, active=self.threads - self.waiting, in_flight=self.running
            )
            self.waiting -= 1
            if self.threads > self.policy.target:
                self.threads -= 1
            else:
                self.wait_on_queue()

        self.later(LONG_POLL_SECONDS, expired)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        event = self.env.timeout(delay)
        event.callbacks.append(lambda _: action())

    # --- a batch ------------------------------------------------------------------------------

    def start_batch(self, messages: list[tuple[int, int]], count: int) -> None:
        calibration, stage = self.calibration, self.stage
        self.running += 1
        self.counters.batches += 1
        self.record_concurrency(self.running - 1)
        seconds = calibration.batch_seconds(count, self.work.task_seconds)
        fresh = self.idle_environments == 0
        if fresh:
            self.counters.environments += 1
            seconds += calibration.cold_start_seconds
        else:
            self.idle_environments -= 1
        failed_whole = False
        duty = count * calibration.task_overhead_seconds / seconds if seconds > 0 else 0.0
        if stage.database_proxy:
            self.db_demand += duty
            pool = stage.proxy_max_connections
            if self.db_demand > pool:
                # The server connections are shared: the database work waits its turn.
                stretch = self.db_demand / pool
                wait = (stretch - 1) * calibration.task_overhead_seconds
                seconds += count * (stretch - 1) * calibration.task_overhead_seconds
                if wait > stage.proxy_borrow_timeout_seconds:
                    self.counters.borrow_timeouts += 1
                    failed_whole = True
            self.peak_db = max(self.peak_db, min(pool, math.ceil(self.db_demand)))
        elif fresh:
            if self.connections >= stage.database_client_slots - math.ceil(self.api_concurrency):
                self.counters.database_refusals += 1
                failed_whole = True
                seconds = calibration.batch_overhead_seconds
            else:
                self.connections += 1
                self.peak_db = max(self.peak_db, self.connections + math.ceil(self.api_concurrency))
        if seconds > stage.worker_timeout_seconds:
            self.counters.timeouts += 1
            seconds = stage.worker_timeout_seconds
            failed_whole = True
        self.counters.worker_function_seconds += seconds
        event = self.env.timeout(seconds)
        event.callbacks.append(lambda _: self.finish_batch(messages, count, duty, failed_whole))

    def record_concurrency(self, before: int) -> None:
        """`running` changed from `before`: each second since the last change had `before`
        running throughout; this one has the most of the two."""
        second = int(self.env.now)
        _grow(self.concurrency, second)
        for earlier in range(self.noted_second + 1, second):
            self.concurrency[earlier] = max(self.concurrency[earlier], before)
        self.concurrency[second] = max(self.concurrency[second], before, self.running)
        self.noted_second = second
        if self.running > self.peak:
            self.peak, self.peak_at = self.running, self.env.now

    def finish_batch(
        self, messages: list[tuple[int, int]], count: int, duty: float, failed_whole: bool
    ) -> None:
        now = self.env.now
        self.running -= 1
        self.record_concurrency(self.running + 1)
        self.idle_environments += 1
        if self.stage.database_proxy:
            self.db_demand = max(0.0, self.db_demand - duty)
        if failed_whole:
            self.policy.batch_failed(now)
            for receives, n in messages:
                self.fail(receives + 1, n, handed_back=False)
        else:
            rate = self.work.failure_rate
            failures = [(r, round(n * rate)) for r, n in messages]
            succeeded = count - sum(n for _, n in failures)
            self.counters.deletes += math.ceil(succeeded / SEND_BATCH_ENTRIES) if succeeded else 0
            self.settle(succeeded, now)
            for receives, n in failures:
                if n:
                    self.fail(receives + 1, n, handed_back=True)
        self.poll()  # the thread polls again at once

    def fail(self, receives: int, n: int, *, handed_back: bool) -> None:
        """`n` messages whose `receives`-th receive failed: back later, or dead-lettered."""
        self.counters.attempts_failed += n
        if receives >= self.stage.max_receives:
            self.counters.dead_lettered += n
            self.settle(n, self.env.now, done=False)
            return
        backoff = self.stage.backoff.delay(receives) if handed_back else None
        delay = self.stage.visibility_timeout_seconds if backoff is None else float(backoff)
        if backoff is not None:  # the app's ChangeMessageVisibilityBatch
            self.counters.visibility_changes += math.ceil(n / SEND_BATCH_ENTRIES)

        def back() -> None:
            self.visible[receives] += n
            self.wake_waiters()

        self.later(delay, back)

    def settle(self, n: int, now: float, *, done: bool = True) -> None:
        if not n:
            return
        if done:
            self.counters.done += n
            second = int(now)
            _grow(self.completions, second)
            self.completions[second] += n
        self.final += n
        self.last_final = now
        if self.final >= self.total and not self.all_final.triggered:
            self.all_final.succeed()

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        if self.total:
            self.env.process(self.api())
            self.env.process(self.control())
            self.env.run(
                until=simpy.AnyOf(self.env, [self.all_final, self.env.timeout(self.limit_seconds)])
            )
        drained = self.final >= self.total
        seconds = int(self.env.now) + 1
        for series in (self.concurrency, self.completions, self.queue, self.arrived):
            _grow(series, seconds - 1)
        return SimulationResult(
            stage=self.stage,
            tasks=self.total,
            drained=drained,
            drain_seconds=self.last_final if drained else None,
            simulated_seconds=self.env.now,
            peak_concurrency=self.peak,
            peak_at_seconds=self.peak_at,
            concurrency_per_second=self.concurrency[:seconds],
            completions_per_second=self.completions[:seconds],
            queue_per_second=self.queue[:seconds],
            arrivals_per_second=self.arrived[:seconds],
            peak_database_connections=self.peak_db,
            peak_api_concurrency=math.ceil(self.peak_api),
            counters=self.counters,
        )


def simulate(
    stage: StageSettings,
    calibration: Calibration,
    work: Workload,
    limit_seconds: float = DEFAULT_LIMIT_SECONDS,
) -> SimulationResult:
    return Model(stage, calibration, work, limit_seconds).run()
