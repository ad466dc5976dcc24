"""A function's runtime maps to an interpreter on this machine, or fails with a clear reason."""

from pathlib import Path

import pytest

from localcloud_ext import runtimes
from localcloud_ext.runtimes import RuntimeNotAvailable


def make_runtime(directory: Path, name: str) -> Path:
    interpreter = directory / name / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.touch()
    return interpreter


def test_finds_the_interpreter_of_an_installed_runtime(tmp_path: Path) -> None:
    interpreter = make_runtime(tmp_path, "python3.11")

    assert runtimes.interpreter_for("python3.11", tmp_path) == interpreter


def test_lists_only_python_runtimes_with_an_interpreter(tmp_path: Path) -> None:
    make_runtime(tmp_path, "python3.12")
    make_runtime(tmp_path, "python3.11")
    (tmp_path / "python3.13").mkdir()  # half-built: no interpreter
    (tmp_path / "notes").mkdir()

    assert runtimes.available_runtimes(tmp_path) == ["python3.11", "python3.12"]


def test_a_missing_interpreter_names_the_runtime_the_alternatives_and_the_fix(
    tmp_path: Path,
) -> None:
    make_runtime(tmp_path, "python3.11")

    with pytest.raises(RuntimeNotAvailable) as error:
        runtimes.interpreter_for("python3.9", tmp_path)

    message = str(error.value)
    assert "python3.9" in message
    assert "available: python3.11" in message
    assert "scripts/setup" in message


@pytest.mark.parametrize("runtime", ["nodejs20.x", "java21", "provided.al2023"])
def test_non_python_runtimes_are_refused(tmp_path: Path, runtime: str) -> None:
    with pytest.raises(RuntimeNotAvailable, match="Python runtimes"):
        runtimes.interpreter_for(runtime, tmp_path)


def test_image_functions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeNotAvailable, match="container image"):
        runtimes.interpreter_for(None, tmp_path)


def test_an_unset_runtimes_dir_says_how_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtimes.RUNTIMES_DIR_VARIABLE, raising=False)

    with pytest.raises(RuntimeNotAvailable, match=runtimes.RUNTIMES_DIR_VARIABLE):
        runtimes.interpreter_for("python3.11")
