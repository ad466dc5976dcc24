"""Finding interpreters and PostgreSQL binaries, with fakes for PATH, pyenv and probing."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud import discovery
from localcloud.discovery import DiscoveryError, Interpreter

PYENV = Path("/fake/pyenv")
VERSIONS: dict[str, tuple[int, int, int]] = {
    "/fake/pyenv/versions/3.13.0/bin/python3.13": (3, 13, 0),
    "/fake/pyenv/versions/3.13.10/bin/python3.13": (3, 13, 10),
    "/fake/pyenv/versions/3.12.1/bin/python3.12": (3, 12, 1),
    "/usr/local/bin/python3.10": (3, 10, 13),
    "/opt/custom/python3.13": (3, 13, 2),
    "/opt/wrong/python": (3, 11, 7),
}


def probe(path: Path) -> tuple[int, int, int] | None:
    return VERSIONS.get(str(path))


def glob_fn(pattern: str) -> list[str]:
    prefix = pattern.split("*")[0]
    suffix = pattern.split("*")[1]
    return [p for p in VERSIONS if p.startswith(prefix) and p.endswith(suffix)]


def shim_on_path(name: str) -> str | None:
    """A pyenv shim that is on PATH but answers "command not found" (probe -> None)."""
    return f"/fake/pyenv/shims/{name}"


def test_the_newest_pyenv_patch_release_wins_over_a_broken_shim() -> None:
    found = discovery.find_python(13, {}, shim_on_path, probe, PYENV, glob_fn)
    assert found == Interpreter(Path("/fake/pyenv/versions/3.13.10/bin/python3.13"), (3, 13, 10))
    assert found is not None and found.tag == "python3.13"


def test_system_locations_are_searched_after_pyenv() -> None:
    found = discovery.find_python(10, {}, lambda _: None, probe, PYENV, glob_fn)
    assert found is not None and found.path == Path("/usr/local/bin/python3.10")


def test_an_explicit_override_is_used_as_is() -> None:
    env = {"LOCALCLOUD_PYTHON313": "/opt/custom/python3.13"}
    found = discovery.find_python(13, env, shim_on_path, probe, PYENV, glob_fn)
    assert found == Interpreter(Path("/opt/custom/python3.13"), (3, 13, 2))


@pytest.mark.parametrize(
    ("path", "says"), [("/opt/wrong/python", "is Python 3.11.7"), ("/nope", "does not run")]
)
def test_a_wrong_override_is_an_error_naming_the_variable(path: str, says: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        discovery.find_python(
            13, {"LOCALCLOUD_PYTHON313": path}, shim_on_path, probe, PYENV, glob_fn
        )
    assert "LOCALCLOUD_PYTHON313" in str(info.value)
    assert says in str(info.value)


def test_nothing_found_is_none_and_the_message_says_how_to_fix_it() -> None:
    assert discovery.find_python(9, {}, shim_on_path, probe, PYENV, glob_fn) is None
    message = discovery.missing_python_message(13)
    assert "pyenv install 3.13" in message
    assert "LOCALCLOUD_PYTHON313" in message


def test_find_runtimes_returns_only_what_exists() -> None:
    found = discovery.find_runtimes([10, 11, 12, 13], {}, lambda _: None, probe, PYENV, glob_fn)
    assert sorted(found) == [10, 12, 13]


def test_pyenv_root_comes_from_the_environment(tmp_path: Path) -> None:
    assert discovery.default_pyenv_root({"PYENV_ROOT": "/x"}) == Path("/x")
    assert discovery.default_pyenv_root({"HOME": str(tmp_path)}) is None
    (tmp_path / ".pyenv").mkdir()
    assert discovery.default_pyenv_root({"HOME": str(tmp_path)}) == tmp_path / ".pyenv"


def make_tools(bindir: Path, tools: tuple[str, ...] = discovery.PG_TOOLS) -> Path:
    bindir.mkdir(parents=True)
    for tool in tools:
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    return bindir


def test_pg_bindir_needs_every_tool(tmp_path: Path) -> None:
    partial = make_tools(tmp_path / "partial", ("initdb", "pg_ctl"))
    full = make_tools(tmp_path / "full")
    assert discovery.find_pg_bindir(lambda _: str(partial / "initdb"), lambda _: [], [full]) == full
    assert discovery.find_pg_bindir(lambda _: None, lambda _: [], [partial]) is None
