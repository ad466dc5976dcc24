"""Log events reach CloudWatch Logs in batches: at most one PutLogEvents per log stream per
second, in the order they were written, within CloudWatch's limits, while invocations run."""

from __future__ import annotations

import threading

from localcloud_ext.log_shipper import (
    MAX_BYTES_PER_PUT,
    MAX_EVENTS_PER_PUT,
    LogEvent,
    LogShipper,
    LogStream,
    event_bytes,
    put_log_chunks,
)
from tests.polling import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLogs:
    """CloudWatch Logs' PutLogEvents, recording each call and when it came."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.puts: list[tuple[float, LogStream, list[LogEvent]]] = []
        self._clock = clock
        self._lock = threading.Lock()

    def __call__(self, stream: LogStream, events: list[LogEvent]) -> None:
        with self._lock:
            self.puts.append((self._clock() if self._clock else 0.0, stream, events))

    def messages(self, stream: LogStream) -> list[str]:
        with self._lock:
            return [e.message for _, s, events in self.puts if s == stream for e in events]


def stream(name: str) -> LogStream:
    return LogStream("/aws/lambda/fn", name, "us-east-1", "arn:aws:iam::000000000000:role/r")


def event(message: str, at_ms: int = 0) -> LogEvent:
    return LogEvent(at_ms, message)


def test_a_short_invocations_lines_go_out_in_one_put_a_second_after_the_first() -> None:
    clock = FakeClock()
    logs = FakeLogs(clock)
    shipper = LogShipper(logs, interval=1.0, clock=clock)
    a = stream("a")

    for message in ("START", "hello", "END", "REPORT"):
        shipper.write(a, event(message))
        clock.now += 0.01
    shipper.ship_due()
    assert logs.puts == []  # not due yet: the batch collects for a second
    clock.now = 101.0
    shipper.ship_due()

    assert len(logs.puts) == 1
    assert logs.messages(a) == ["START", "hello", "END", "REPORT"]


def test_a_long_invocation_ships_every_second_while_it_runs() -> None:
    clock = FakeClock()
    logs = FakeLogs(clock)
    shipper = LogShipper(logs, interval=1.0, clock=clock)
    a = stream("a")

    written: dict[str, float] = {"START": clock.now}
    shipper.write(a, event("START"))
    for tick in range(1, 41):  # 10 s of a line every 0.25 s, the shipper looking as often
        clock.now = 100.0 + tick * 0.25
        written[f"line {tick}"] = clock.now
        shipper.write(a, event(f"line {tick}"))
        shipper.ship_due()

    times = [at for at, _, _ in logs.puts]
    assert len(times) >= 8
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[1:], strict=False))
    shipped = logs.messages(a)
    assert shipped == ["START"] + [f"line {tick}" for tick in range(1, len(shipped))]
    for at, _, events in logs.puts:  # every line is out within a second of its writing
        assert all(at - written[e.message] <= 1.0 for e in events)


def test_each_stream_has_its_own_second() -> None:
    clock = FakeClock()
    logs = FakeLogs(clock)
    shipper = LogShipper(logs, interval=1.0, clock=clock)
    a, b = stream("a"), stream("b")

    shipper.write(a, event("a1"))
    clock.now = 100.5
    shipper.write(b, event("b1"))
    clock.now = 101.0
    shipper.ship_due()
    assert [s for _, s, _ in logs.puts] == [a]
    clock.now = 101.5
    shipper.ship_due()

    assert [s for _, s, _ in logs.puts] == [a, b]


def test_a_stream_is_never_put_twice_within_a_second() -> None:
    clock = FakeClock()
    logs = FakeLogs(clock)
    shipper = LogShipper(logs, interval=1.0, clock=clock)
    a = stream("a")
    shipper.write(a, event("first"))
    clock.now = 101.0
    shipper.ship_due()

    clock.now = 101.2
    shipper.write(a, event("second"))
    clock.now = 101.9
    shipper.ship_due()
    assert len(logs.puts) == 1
    clock.now = 102.2
    shipper.ship_due()

    assert [at for at, _, _ in logs.puts] == [101.0, 102.2]
    assert shipper.seconds_until_due() is None


def test_a_batch_over_cloudwatchs_limits_is_split_in_order() -> None:
    many = [event(f"{i}") for i in range(MAX_EVENTS_PER_PUT + 5)]
    big = [event("x" * 200_000) for _ in range(12)]

    by_count = put_log_chunks(many)
    by_size = put_log_chunks(big)

    assert [len(chunk) for chunk in by_count] == [MAX_EVENTS_PER_PUT, 5]
    assert [e for chunk in by_count for e in chunk] == many
    assert all(sum(event_bytes(e) for e in chunk) <= MAX_BYTES_PER_PUT for chunk in by_size)
    assert [e for chunk in by_size for e in chunk] == big


def test_a_failing_put_does_not_stop_the_other_streams() -> None:
    clock = FakeClock()
    logs = FakeLogs(clock)
    a, b = stream("a"), stream("b")

    def put(target: LogStream, events: list[LogEvent]) -> None:
        if target == a:
            raise RuntimeError("CloudWatch Logs said no")
        logs(target, events)

    shipper = LogShipper(put, interval=1.0, clock=clock)
    shipper.write(a, event("lost"))
    shipper.write(b, event("kept"))
    clock.now = 101.0
    shipper.ship_due()

    assert logs.messages(b) == ["kept"]


def test_the_shipper_thread_ships_and_stop_ships_what_is_pending() -> None:
    logs = FakeLogs()
    shipper = LogShipper(logs, interval=0.05)
    a = stream("a")
    shipper.start()

    shipper.write(a, event("soon"))
    wait_for(lambda: logs.messages(a), lambda m: m == ["soon"], 10, "the shipper's put")
    slow = LogShipper(logs, interval=3600.0)
    slow.start()
    slow.write(a, event("at stop"))
    slow.stop()
    shipper.stop()

    assert logs.messages(a) == ["soon", "at stop"]
