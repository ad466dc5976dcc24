"""A function's output is read as it is written, cut into lines stamped with the time they were
read, by one thread for every function process, without ever blocking a function."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest

from localcloud_ext import output_capture
from localcloud_ext.log_shipper import MAX_LINE_BYTES, LogEvent
from localcloud_ext.output_capture import CapturedOutput, OutputReader
from tests.polling import wait_for


class FakeClocks:
    """The wall clock (seconds since the epoch) and the monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


class Lines:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: LogEvent) -> None:
        with self._lock:
            self.events.append(event)

    def messages(self) -> list[str]:
        with self._lock:
            return [event.message for event in self.events]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_each_line_is_stamped_with_the_time_it_was_read(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    clocks, lines = FakeClocks(), Lines()
    capture = CapturedOutput(read_fd, lines, clocks.wall, clocks.monotonic)

    os.write(write_fd, b"first\nsecond\n")
    capture.flush()
    clocks.now += 2.0
    os.write(write_fd, b"third\n")
    capture.flush()

    assert lines.events == [
        LogEvent(1_700_000_000_000, "first"),
        LogEvent(1_700_000_000_000, "second"),
        LogEvent(1_700_000_002_000, "third"),
    ]


def test_a_partial_line_waits_for_its_end_and_keeps_the_time_it_began(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    clocks, lines = FakeClocks(), Lines()
    capture = CapturedOutput(read_fd, lines, clocks.wall, clocks.monotonic)

    os.write(write_fd, b"progress: ")
    capture.read_available()
    assert lines.events == []  # no newline yet
    clocks.now += 0.1
    os.write(write_fd, b"done\n")
    capture.read_available()

    assert lines.events == [LogEvent(1_700_000_000_000, "progress: done")]


def test_a_partial_line_goes_out_alone_after_a_short_wait(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    clocks, lines = FakeClocks(), Lines()
    capture = CapturedOutput(read_fd, lines, clocks.wall, clocks.monotonic)
    os.write(write_fd, b"waiting")
    capture.read_available()

    capture.hand_on_partial_line_if_due(clocks.now + output_capture.PARTIAL_LINE_FLUSH_SECONDS / 2)
    assert lines.messages() == []
    capture.hand_on_partial_line_if_due(clocks.now + output_capture.PARTIAL_LINE_FLUSH_SECONDS)
    assert lines.messages() == ["waiting"]


def test_flush_hands_on_the_unfinished_line_too(pipe: tuple[int, int]) -> None:
    """Before END is logged, everything the function wrote must be out, ended or not."""
    read_fd, write_fd = pipe
    lines = Lines()
    capture = CapturedOutput(read_fd, lines)

    os.write(write_fd, b"line\nno newline")
    capture.flush()

    assert lines.messages() == ["line", "no newline"]


def test_empty_lines_are_dropped_as_cloudwatch_refuses_empty_events(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    lines = Lines()
    capture = CapturedOutput(read_fd, lines)

    os.write(write_fd, b"a\n\n\nb\n")
    capture.flush()

    assert lines.messages() == ["a", "b"]


def test_a_line_longer_than_one_event_is_cut_at_character_boundaries(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    lines = Lines()
    capture = CapturedOutput(read_fd, lines)
    text = "é" * MAX_LINE_BYTES  # two bytes each: no cut at MAX_LINE_BYTES falls between chars
    writer = threading.Thread(target=os.write, args=(write_fd, (text + "\n").encode()))

    writer.start()
    while writer.is_alive() or not lines.events:
        capture.read_available()
        writer.join(0.01)
    capture.flush()

    pieces = lines.messages()
    assert len(pieces) > 1
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)


def test_end_of_file_hands_on_the_last_words(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    lines = Lines()
    capture = CapturedOutput(read_fd, lines)
    os.write(write_fd, b"last words")
    os.close(write_fd)

    assert capture.read_available() is True
    assert lines.messages() == ["last words"]


def test_one_thread_reads_every_pipe() -> None:
    reader = OutputReader()
    pipes = [os.pipe() for _ in range(50)]
    lines = [Lines() for _ in pipes]

    def readers() -> int:
        return sum(thread.name == "lambda-output" for thread in threading.enumerate())

    readers_before = readers()

    for (read_fd, _), sink in zip(pipes, lines, strict=True):
        reader.watch(read_fd, sink)
    for index, (_, write_fd) in enumerate(pipes):
        os.write(write_fd, f"hello from {index}\n".encode())
        os.close(write_fd)

    for index, sink in enumerate(lines):
        wait_for(sink.messages, lambda m, i=index: m == [f"hello from {i}"], 10, f"pipe {index}")
    assert readers() - readers_before == 1  # one reader thread for all 50 pipes


def test_more_than_a_pipe_buffer_is_read_while_the_writer_writes() -> None:
    reader = OutputReader()
    read_fd, write_fd = os.pipe()
    lines = Lines()
    reader.watch(read_fd, lines)
    payload = b"x" * 1_000_000 + b"\n"  # 15x the 64 KiB pipe buffer: blocks unless read
    writer = threading.Thread(target=lambda: (os.write(write_fd, payload), os.close(write_fd)))

    writer.start()
    writer.join(timeout=10)

    assert not writer.is_alive()
    wait_for(lambda: "".join(lines.messages()), lambda text: len(text) == 1_000_000, 10, "output")


def test_the_reader_hands_on_a_partial_line_after_its_wait() -> None:
    reader = OutputReader()
    read_fd, write_fd = os.pipe()
    lines = Lines()
    reader.watch(read_fd, lines)

    os.write(write_fd, b"prompt> ")

    wait_for(lines.messages, lambda m: m == ["prompt> "], 10, "the partial line")
    os.close(write_fd)
