"""scripts/localcloud against real processes: PostgreSQL via the secret, up/down of a second
instance, `up` twice, a taken port, and a failed `up` that cleans up after itself."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from localcloud import endpoints, procs
from localcloud.aws import client_for_running
from localcloud.settings import PROJECT_ROOT, Settings

SCRIPT = PROJECT_ROOT / "scripts" / "localcloud"


def run_localcloud(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Instance = Callable[..., tuple[dict[str, str], Settings]]


@pytest.fixture
def instance(localcloud_settings: Settings) -> Iterator[Instance]:
    """Factory of independent local-cloud configurations: own state dir and ports, sharing the
    venvs built by scripts/setup. Whatever one left running is stopped at teardown."""
    made: list[tuple[dict[str, str], Path]] = []

    def make(traversable: bool = True, **overrides: str) -> tuple[dict[str, str], Settings]:
        state = Path(tempfile.mkdtemp(prefix="localcloud-test-"))
        if traversable:  # mkdtemp makes it 0700; the postgres user must reach its data dir
            state.chmod(0o755)
        env = dict(os.environ)
        env.update(
            LOCALCLOUD_STATE_DIR=str(state),
            LOCALCLOUD_VENVS_DIR=str(localcloud_settings.venvs_dir),
            LOCALCLOUD_PORT=str(free_port()),
            LOCALCLOUD_PG_PORT=str(free_port()),
            LOCALCLOUD_PROXY_PORT=str(free_port()),
        )
        env.update(overrides)
        made.append((env, state))
        return env, Settings.from_env(env)

    yield make
    for env, state in made:
        if any((state / "run").glob("*.pid")):
            run_localcloud("down", env=env)
        shutil.rmtree(state, ignore_errors=True)


def test_postgres_is_reachable_with_the_credentials_in_the_secret(
    local_cloud: dict[str, Any],
) -> None:
    secrets = client_for_running(local_cloud, "secretsmanager")
    response = secrets.get_secret_value(SecretId=local_cloud["postgres"]["secret_name"])
    secret = json.loads(response["SecretString"])
    assert response["ARN"] == local_cloud["postgres"]["secret_arn"]
    assert set(secret) == {"username", "password", "engine", "host", "port", "dbname"}
    assert (secret["engine"], secret["host"]) == ("postgres", "127.0.0.1")
    assert secret["port"] == local_cloud["postgres"]["port"]

    with psycopg.connect(
        host=secret["host"],
        port=secret["port"],
        dbname=secret["dbname"],
        user=secret["username"],
        password=secret["password"],
        connect_timeout=5,
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_user").fetchone() == (secret["username"],)
        method = conn.execute("show password_encryption").fetchone()
        assert method == ("scram-sha-256",)

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=secret["host"],
            port=secret["port"],
            dbname=secret["dbname"],
            user=secret["username"],
            password="wrong",
            connect_timeout=5,
        ).close()


def test_up_twice_is_harmless(local_cloud: dict[str, Any], localcloud_settings: Settings) -> None:
    result = run_localcloud("up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    after = endpoints.load(localcloud_settings.endpoints_file)
    assert after["localstack"]["pid"] == local_cloud["localstack"]["pid"]
    assert after["postgres"]["pid"] == local_cloud["postgres"]["pid"]
    assert after["database_proxy"]["pid"] == local_cloud["database_proxy"]["pid"]
    assert run_localcloud("status").returncode == 0


def test_down_of_an_independent_instance_leaves_nothing_running(instance: Instance) -> None:
    env, cfg = instance()
    up = run_localcloud("up", env=env)
    assert up.returncode == 0, up.stderr
    data = endpoints.load(cfg.endpoints_file)
    assert data["localstack"]["url"] == f"http://127.0.0.1:{cfg.port}"
    assert data["postgres"]["port"] == cfg.pg_port
    assert data["database_proxy"]["port"] == cfg.proxy_port
    records = [
        procs.read_pidfile(path)
        for path in (cfg.localstack_pidfile, cfg.pg_pidfile, cfg.proxy_pidfile)
    ]
    assert all(r is not None and r.is_running() for r in records)

    down = run_localcloud("down", env=env)

    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(r is not None and r.is_running() for r in records)
    assert procs.port_is_free("127.0.0.1", cfg.port)
    assert procs.port_is_free("127.0.0.1", cfg.pg_port)
    assert procs.port_is_free("127.0.0.1", cfg.proxy_port)
    assert procs.port_is_free("127.0.0.1", cfg.proxy_port)
    assert not cfg.endpoints_file.exists()
    assert run_localcloud("status", env=env).returncode != 0


@pytest.mark.parametrize(
    "taken", ["LOCALCLOUD_PORT", "LOCALCLOUD_PG_PORT", "LOCALCLOUD_PROXY_PORT"]
)
def test_a_taken_port_stops_up_with_a_message_naming_it(instance: Instance, taken: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env, cfg = instance(**{taken: str(port)})

        result = run_localcloud("up", env=env)

        assert result.returncode != 0
        assert f"127.0.0.1:{port}" in result.stderr
        assert taken in result.stderr
        assert f"pid {os.getpid()}" in result.stderr  # the process holding it is named
    others = {"LOCALCLOUD_PORT": cfg.port, "LOCALCLOUD_PG_PORT": cfg.pg_port}
    others["LOCALCLOUD_PROXY_PORT"] = cfg.proxy_port
    for variable, other in others.items():
        if variable != taken:
            assert procs.port_is_free("127.0.0.1", other)
    assert not cfg.localstack_pidfile.exists()
    assert not cfg.proxy_pidfile.exists()
    assert not (cfg.pg_data / "postmaster.pid").exists()


def test_a_failed_up_stops_what_it_started(instance: Instance) -> None:
    # LocalStack starts, then PostgreSQL cannot reach a 0700 state dir: LocalStack must go again
    env, cfg = instance(traversable=False)
    if os.geteuid() != 0:
        pytest.skip("only root runs PostgreSQL as another user")

    result = run_localcloud("up", env=env)

    assert result.returncode != 0
    assert "cannot traverse" in result.stderr
    assert cfg.localstack_log.exists()  # it did start
    assert not cfg.localstack_pidfile.exists()
    assert procs.port_is_free("127.0.0.1", cfg.port)
    assert procs.port_is_free("127.0.0.1", cfg.pg_port)
    assert procs.port_is_free("127.0.0.1", cfg.proxy_port)
