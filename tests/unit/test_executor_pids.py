"""Function processes are recorded so that they can be stopped by PID, and only they."""

import os
from pathlib import Path

from localcloud_ext.pids import PidRecord, process_start_time


def test_start_time_of_a_live_process_is_stable_and_of_a_dead_one_none() -> None:
    assert process_start_time(os.getpid()) == process_start_time(os.getpid())
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(2**22 + 12345) is None  # above any pid_max


def test_record_holds_pid_and_start_time(tmp_path: Path) -> None:
    record = PidRecord.create(tmp_path / "functions", "env1", os.getpid())

    assert record.path.read_text().split() == [str(os.getpid()), process_start_time(os.getpid())]


def test_remove_leaves_a_record_that_a_newer_process_wrote(tmp_path: Path) -> None:
    old = PidRecord.create(tmp_path, "env1", os.getpid())
    old.path.write_text("999999 1\n")  # the environment respawned: a new process owns the file

    old.remove()

    assert old.path.exists()


def test_remove_deletes_its_own_record(tmp_path: Path) -> None:
    record = PidRecord.create(tmp_path, "env1", os.getpid())

    record.remove()

    assert not record.path.exists()


def test_a_record_being_written_is_left_to_its_writer(tmp_path: Path) -> None:
    record = PidRecord.create(tmp_path, "env-1", os.getpid(), "fn")
    record.path.write_text("")  # truncated: a respawn's create() is between open and write

    record.remove()

    assert record.path.exists()
