"""Which Python the tools venv is built from: it is the app's Lambda runtime (Chalice deploys
on the Python it runs on), and SnapStart for Python needs 3.12 or later."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from localcloud import discovery, install

PY312 = discovery.Interpreter(Path("/opt/python3.12/bin/python3.12"), (3, 12, 1))


def test_python_3_12_is_chosen_where_the_machine_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "find_python", lambda minor, env: PY312 if minor == 12 else None)
    notes: list[str] = []

    assert install.tools_interpreter({}, notes) == PY312
    assert notes == []


def test_without_3_12_this_python_is_used_and_the_note_says_what_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(discovery, "find_python", lambda minor, env: None)
    notes: list[str] = []

    chosen = install.tools_interpreter({}, notes)

    assert chosen.path == Path(sys.executable)
    [note] = notes
    assert "no Python 3.12" in note and "pyenv install 3.12" in note
    assert ("without SnapStart" in note) == (sys.version_info[:2] < (3, 12))
