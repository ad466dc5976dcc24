"""endpoints.json merging, credentials, LocalStack's environment, venv stamps, traversal checks."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from localcloud import endpoints, install, localstack
from localcloud.discovery import Interpreter
from localcloud.postgres import Credentials, unreachable_parent
from localcloud.settings import Settings


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"LOCALCLOUD_STATE_DIR": str(tmp_path / "state"), "LOCALCLOUD_PORT": "4700"}
    )


def test_endpoints_update_keeps_sections_written_by_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    endpoints.update(path, {"api": {"url": "http://x"}})
    data = endpoints.update(path, {"localstack": {"url": "http://y"}})
    assert data["api"] == {"url": "http://x"}
    assert data["localstack"] == {"url": "http://y"}
    assert json.loads(path.read_text()) == data
    assert data["version"] == endpoints.VERSION


def test_a_fresh_update_drops_sections_of_a_previous_instance(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    endpoints.update(path, {"api": {"url": "http://old"}})
    assert "api" not in endpoints.update(path, {"region": "us-east-1"}, fresh=True)
    endpoints.remove(path)
    assert endpoints.load(path) == {}


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "pg" / "credentials.json"
    first = Credentials.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load_or_create(path) == first
    assert (first.username, first.dbname) == ("app_owner", "app")
    assert len(first.password) >= 24


def test_localstack_binds_to_loopback_on_the_configured_port(cfg: Settings) -> None:
    env = localstack.localstack_environment(cfg)
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4700"
    assert env["LOCALSTACK_HOST"] == "127.0.0.1:4700"
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == "process"
    assert env["SQS_DISABLE_CLOUDWATCH_METRICS"] == "1"
    assert env["LOCALCLOUD_PIDS_DIR"] == str(cfg.functions_pids_dir)
    assert env["LOCALCLOUD_RUNTIMES_DIR"] == str(cfg.runtimes_dir)
    for key in ("FILESYSTEM_ROOT", "TMPDIR", "XDG_CACHE_HOME"):
        assert env[key].startswith(str(cfg.state_dir)), key


def test_localstack_does_not_inherit_python_path_variables(cfg: Settings) -> None:
    env = localstack.process_environment(
        cfg, {"PATH": "/bin", "PYTHONPATH": "infra", "VIRTUAL_ENV": "/v"}
    )
    assert env["PATH"] == "/bin"
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env


def test_a_venv_stamp_changes_when_a_requirement_file_changes(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("boto3==1\n")
    spec = install.VenvSpec(
        "x", tmp_path / "venv", Interpreter(Path("/py"), (3, 13, 0)), [["-r", str(reqs)]], [reqs]
    )
    before = spec.digest()
    assert spec.digest() == before
    reqs.write_text("boto3==2\n")
    assert spec.digest() != before
    assert not install.is_current(spec)  # no stamp, no venv


def test_a_missing_input_file_still_has_a_digest(tmp_path: Path) -> None:
    spec = install.VenvSpec(
        "x", tmp_path, Interpreter(Path("/py"), (3, 13, 0)), [], [tmp_path / "absent"]
    )
    assert len(spec.digest()) == 64


def test_unreachable_parent_names_the_first_folder_without_the_x_bit(tmp_path: Path) -> None:
    private = tmp_path / "private"
    target = private / "data"
    target.mkdir(parents=True)
    me, groups = os.geteuid(), os.getgroups()  # owner bits apply: the folders are ours
    try:
        private.chmod(0o600)
        assert unreachable_parent(target, me, groups) == private
    finally:
        private.chmod(0o700)
    assert unreachable_parent(target, me, groups) is None
