"""A function's output is captured per invocation, without ever blocking the function."""

import os
import threading

from localcloud_ext.environment import _BoundedLog, _OutputCapture


def test_take_returns_what_was_written_since_the_last_take() -> None:
    read_fd, write_fd = os.pipe()
    capture = _OutputCapture(read_fd, _BoundedLog())

    os.write(write_fd, b"first\n")
    assert capture.take() == "first\n"
    os.write(write_fd, b"second\n")
    assert capture.take() == "second\n"
    assert capture.take() == ""
    os.close(write_fd)


def test_more_than_a_pipe_buffer_is_read_while_the_writer_writes() -> None:
    read_fd, write_fd = os.pipe()
    capture = _OutputCapture(read_fd, _BoundedLog())
    payload = b"x" * 1_000_000  # 15x the 64 KiB pipe buffer: blocks unless read concurrently
    writer = threading.Thread(target=lambda: (os.write(write_fd, payload), os.close(write_fd)))

    writer.start()
    writer.join(timeout=10)

    assert not writer.is_alive()
    assert capture.take() == payload.decode()


def test_output_after_the_writer_closed_is_still_taken() -> None:
    read_fd, write_fd = os.pipe()
    capture = _OutputCapture(read_fd, _BoundedLog())
    os.write(write_fd, b"last words\n")
    os.close(write_fd)

    assert capture.take() == "last words\n"
    assert capture.take() == ""


def test_environment_log_keeps_the_tail_within_its_limit() -> None:
    log = _BoundedLog(limit=10)
    for part in ("aaaa", "bbbb", "cccc", "dddd"):
        log.append(part)

    assert log.text() == "ccccdddd"
