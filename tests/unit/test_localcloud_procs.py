"""Process identity: a PID is only ours while its /proc start time matches the recorded one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud import procs
from localcloud.procs import ProcessRecord


def fake_proc(root: Path, pid: int, starttime: int, state: str = "S", comm: str = "python") -> Path:
    """A /proc/PID/stat line with the given fields (22 = starttime)."""
    fields = [state, "1", str(pid), str(pid)] + ["0"] * 15 + [str(starttime)] + ["0"] * 30
    (root / str(pid)).mkdir(parents=True, exist_ok=True)
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    return root


@pytest.fixture
def no_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError(f"a signal was sent: {args}")

    monkeypatch.setattr(os, "kill", refuse)
    monkeypatch.setattr(os, "killpg", refuse)


def test_parse_stat_reads_start_time_even_when_the_name_has_spaces_and_parens(
    tmp_path: Path,
) -> None:
    fake_proc(tmp_path, 4242, 987654, comm="my (odd) name")
    stat = procs.read_stat(4242, tmp_path)
    assert stat is not None
    assert (stat.pid, stat.comm, stat.starttime, stat.pgid) == (4242, "my (odd) name", 987654, 4242)


def test_parse_stat_of_this_process_matches_os() -> None:
    stat = procs.read_stat(os.getpid())
    assert stat is not None
    assert stat.pid == os.getpid()
    assert stat.ppid == os.getppid()
    assert stat.pgid == os.getpgrp()


def test_record_round_trips_through_the_pidfile_format(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.pid"
    procs.write_pidfile(path, ProcessRecord(123, 456))
    assert path.read_text() == "123 456\n"
    assert procs.read_pidfile(path) == ProcessRecord(123, 456)


@pytest.mark.parametrize("content", ["", "abc", "123", "1 5", "0 5", "-4 5"])
def test_malformed_or_dangerous_pidfiles_are_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.pid"
    path.write_text(content)
    assert procs.read_pidfile(path) is None


def test_missing_pidfile_is_none(tmp_path: Path) -> None:
    assert procs.read_pidfile(tmp_path / "none.pid") is None


def test_a_record_runs_only_while_the_start_time_matches(tmp_path: Path) -> None:
    fake_proc(tmp_path, 77, 1000)
    assert ProcessRecord(77, 1000).is_running(tmp_path)
    assert not ProcessRecord(77, 999).is_running(tmp_path)  # PID reused by another process
    assert not ProcessRecord(78, 1000).is_running(tmp_path)  # gone


def test_a_zombie_does_not_count_as_running(tmp_path: Path) -> None:
    fake_proc(tmp_path, 77, 1000, state="Z")
    assert not ProcessRecord(77, 1000).is_running(tmp_path)


def test_stop_never_signals_a_recycled_pid(tmp_path: Path, no_signals: None) -> None:
    fake_proc(tmp_path, 77, 1000)
    outcome = procs.stop(ProcessRecord(77, 5), "thing", grace=0.1, proc=tmp_path)
    assert "not running" in outcome
    assert not procs.kill_group(ProcessRecord(77, 5), proc=tmp_path)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield child
    child.kill()
    child.wait()


def test_stop_ends_a_real_process_group_we_started(sleeper: subprocess.Popen[bytes]) -> None:
    record = ProcessRecord.of(sleeper.pid)
    assert record is not None and record.is_running()
    outcome = procs.stop(record, "sleeper", grace=5)
    sleeper.wait(timeout=5)  # reap, so it is not left a zombie
    assert "stopped (SIGTERM)" in outcome
    assert not record.is_running()


def test_a_wrong_start_time_leaves_a_real_process_alone(sleeper: subprocess.Popen[bytes]) -> None:
    record = ProcessRecord.of(sleeper.pid)
    assert record is not None
    impostor = ProcessRecord(record.pid, record.starttime + 1)
    assert "not running" in procs.stop(impostor, "sleeper", grace=0.1)
    assert not procs.kill_group(impostor)
    assert sleeper.poll() is None


def test_kill_group_kills_a_verified_group_leader(sleeper: subprocess.Popen[bytes]) -> None:
    record = ProcessRecord.of(sleeper.pid)
    assert record is not None
    assert procs.kill_group(record)
    assert sleeper.wait(timeout=5) == -9


def test_listening_inodes_reads_the_proc_net_tables(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()

    def row(local: str, remote: str, state: str, inode: str) -> str:
        return f"0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 0 0 {inode} 1\n"

    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid\n"
    listen = row("0100007F:11D6", "00000000:0000", "0A", "5555")  # 127.0.0.1:4566 LISTEN
    established = row("0100007F:11D6", "0100007F:9999", "01", "6666")
    (tmp_path / "net" / "tcp").write_text(header + listen + established)
    assert procs.listening_inodes(4566, tmp_path) == {"5555"}
    assert procs.listening_inodes(4567, tmp_path) == set()


def test_poll_returns_false_after_the_timeout() -> None:
    assert not procs.poll(lambda: False, timeout=0.05, interval=0.01)
    assert procs.poll(lambda: True, timeout=0)
