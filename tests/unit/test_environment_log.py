"""An environment's log as Lambda writes it: events in the order they happened, each with its
time; START when the invocation is handed over, END and REPORT when its result arrived, so
START..END spans Duration; the invoke's LogResult tail runs from START to REPORT."""

from __future__ import annotations

from localcloud_ext import report
from localcloud_ext.environment_log import LOG_RESULT_TAIL_BYTES, BoundedText, EnvironmentLog
from localcloud_ext.log_shipper import LogEvent


class FakeWallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def write(self, event: LogEvent) -> None:
        self.events.append(event)


def a_report(request_id: str, duration_ms: float) -> report.InvocationReport:
    return report.InvocationReport(request_id, duration_ms, 128, 40, init_duration_ms=120.5)


def test_start_and_end_span_the_measured_duration_with_output_between() -> None:
    clock, sink = FakeWallClock(), RecordingSink()
    log = EnvironmentLog(sink, clock)

    started_ms = log.start_invocation("r1", "$LATEST")
    log.output(LogEvent(1_700_000_000_250, "working"))
    clock.now += 2.0
    log.output(LogEvent(1_700_000_002_000, "done"))
    log.end_invocation(started_ms, a_report("r1", 2003.4))

    assert [(e.timestamp_ms, e.message.split("\t")[0]) for e in sink.events] == [
        (1_700_000_000_000, "START RequestId: r1 Version: $LATEST"),
        (1_700_000_000_250, "working"),
        (1_700_000_002_000, "done"),
        (1_700_000_002_003, "END RequestId: r1"),
        (1_700_000_002_003, "REPORT RequestId: r1"),
    ]


def test_the_tail_runs_from_start_to_report_without_the_init() -> None:
    """AWS: LogResult is the invocation's log; INIT_START and the init's output are not in it."""
    clock = FakeWallClock()
    log = EnvironmentLog(RecordingSink(), clock)
    log.open_record()
    log.platform(report.init_start_line("python3.12"))
    log.output(LogEvent(1_700_000_000_000, "init output"))
    log.close_record()

    started_ms = log.start_invocation("r1", "$LATEST")
    log.output(LogEvent(1_700_000_000_010, "handling r1"))
    tail = log.end_invocation(started_ms, a_report("r1", 12.0))

    lines = tail.splitlines()
    assert lines[:3] == ["START RequestId: r1 Version: $LATEST", "handling r1", "END RequestId: r1"]
    assert lines[3].startswith("REPORT RequestId: r1\tDuration: 12.00 ms")
    assert len(lines) == 4


def test_the_tail_keeps_the_last_4_kb_of_a_long_invocation() -> None:
    log = EnvironmentLog(RecordingSink(), FakeWallClock())
    started_ms = log.start_invocation("r1", "$LATEST")
    for index in range(1000):
        log.output(LogEvent(started_ms, f"line {index:04d} " + "." * 40))
    tail = log.end_invocation(started_ms, a_report("r1", 5.0))

    assert LOG_RESULT_TAIL_BYTES <= len(tail.encode()) < LOG_RESULT_TAIL_BYTES + 200
    assert tail.splitlines()[-1].startswith("REPORT RequestId: r1")
    assert "line 0999" in tail and "line 0000" not in tail


def test_a_timeouts_line_comes_before_end() -> None:
    sink = RecordingSink()
    log = EnvironmentLog(sink, FakeWallClock())

    started_ms = log.start_invocation("r1", "$LATEST")
    log.end_invocation(started_ms, a_report("r1", 3000.0), "timed out")

    assert [e.message.split(" ")[0] for e in sink.events] == ["START", "timed", "END", "REPORT"]


def test_timestamps_never_go_backwards_within_a_stream() -> None:
    """CloudWatch wants the events of a batch in order; a line read late keeps its place."""
    clock, sink = FakeWallClock(), RecordingSink()
    log = EnvironmentLog(sink, clock)

    log.output(LogEvent(1_700_000_000_500, "late reader"))
    log.platform("earlier by the clock")  # the wall clock says 0.5 s before

    assert [e.timestamp_ms for e in sink.events] == [1_700_000_000_500, 1_700_000_000_500]


def test_diagnostics_keep_the_tail_of_the_functions_output_only() -> None:
    log = EnvironmentLog(RecordingSink(), FakeWallClock())
    log.platform("START RequestId: r1 Version: $LATEST")
    log.output(LogEvent(0, "printed"))

    assert log.diagnostics() == "printed\n"


def test_bounded_text_keeps_at_least_its_limit_in_whole_parts() -> None:
    text = BoundedText(limit=10)
    for part in ("aaaa", "bbbb", "cccc", "dddd"):
        text.append(part)

    assert text.text() == "bbbbccccdddd"
