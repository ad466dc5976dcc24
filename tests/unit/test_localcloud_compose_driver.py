"""LOCALCLOUD_RUNTIME=docker: scripts/localcloud drives `docker compose` (localcloud.compose),
tested with a fake runner and a fake `docker` command; the default stays host processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from localcloud import cli, compose, container, database_proxy, endpoints
from localcloud.compose import Result
from localcloud.postgres import Credentials, render_hba
from localcloud.settings import COMPOSE_FILE, PROJECT_ROOT, Runtime, Settings, SettingsError

PIDS = {"ls-id": "4101", "pg-id": "4102", "proxy-id": "4103"}
SERVICE_IDS = {"localstack": "ls-id", "postgres": "pg-id", "pgbouncer": "proxy-id"}


@dataclass
class Call:
    argv: list[str]
    env: Mapping[str, str] | None
    stdin: str | None


@dataclass
class FakeDocker:
    """Answers the docker commands localcloud.compose runs, and records them."""

    engine: bool = True
    pids: dict[str, str] = field(default_factory=lambda: dict(PIDS))
    left_after_down: str = ""
    calls: list[Call] = field(default_factory=list)

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        stdin: str | None,
        timeout: float,
    ) -> Result:
        argv = list(argv)
        self.calls.append(Call(argv, env, stdin))
        if argv[:3] == ["docker", "compose", "version"]:
            return Result(0, "2.29.1\n")
        if argv[:2] == ["docker", "info"]:
            if not self.engine:
                return Result(1, "", "Cannot connect to the Docker daemon. Is it running?")
            return Result(0, "27.1.1\n")
        if argv[:2] == ["docker", "inspect"]:
            return Result(0, self.pids[argv[-1]] + "\n")
        verb = argv[6:]  # after docker compose --project-name P --file F
        if verb[:2] == ["ps", "-q"]:
            return Result(0, SERVICE_IDS[verb[2]] + "\n")
        if verb[:3] == ["ps", "--all", "-q"]:
            return Result(0, self.left_after_down)
        return Result(0, "")

    def compose_verbs(self) -> list[list[str]]:
        return [c.argv[6:] for c in self.calls if c.argv[:2] == ["docker", "compose"]][1:]


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"LOCALCLOUD_STATE_DIR": str(tmp_path), "LOCALCLOUD_RUNTIME": "docker"}
    )


def fake_secret(cfg: Settings, creds: Credentials) -> str:
    return f"arn:aws:secretsmanager:{cfg.region}:000000000000:secret:{creds.username}"


# --- the switch -----------------------------------------------------------------------------


def test_the_default_runtime_is_host_processes() -> None:
    assert Settings.from_env({}).runtime is Runtime.HOST
    assert Settings.from_env({"LOCALCLOUD_RUNTIME": " "}).runtime is Runtime.HOST
    assert cli.COMMANDS[Runtime.HOST] == (cli.cmd_up, cli.cmd_down, cli.cmd_status, cli.cmd_logs)


def test_docker_selects_the_compose_driver() -> None:
    assert Settings.from_env({"LOCALCLOUD_RUNTIME": "Docker"}).runtime is Runtime.DOCKER
    up, down, status, _ = cli.COMMANDS[Runtime.DOCKER]
    assert (up, down, status) == (cli.cmd_up_docker, cli.cmd_down_docker, cli.cmd_status_docker)


def test_an_unknown_runtime_stops_with_the_choices() -> None:
    with pytest.raises(SettingsError, match=r"LOCALCLOUD_RUNTIME='podman'.*host, docker"):
        Settings.from_env({"LOCALCLOUD_RUNTIME": "podman"})


def test_the_default_state_dir_is_the_compose_project_localcloud(tmp_path: Path) -> None:
    assert Settings.from_env({}).compose_project == "localcloud"
    other = Settings.from_env({"LOCALCLOUD_STATE_DIR": str(tmp_path)}).compose_project
    assert other.startswith("localcloud-") and other != "localcloud"


# --- no Docker engine -----------------------------------------------------------------------


def test_no_docker_command_says_so_and_how_to_do_without(cfg: Settings) -> None:
    def missing(*_: object) -> Result:
        raise FileNotFoundError("docker")

    with pytest.raises(compose.DockerError) as error:
        compose.up(cfg, missing, fake_secret)
    assert "no `docker` command" in str(error.value)
    assert "unset LOCALCLOUD_RUNTIME" in str(error.value)
    assert not cfg.endpoints_file.exists()


def test_no_engine_answering_says_so_before_anything_is_written(cfg: Settings) -> None:
    docker = FakeDocker(engine=False)
    with pytest.raises(compose.DockerError, match="no Docker engine answers.*Cannot connect"):
        compose.up(cfg, docker, fake_secret)
    assert [c.argv[:2] for c in docker.calls] == [["docker", "compose"], ["docker", "info"]]
    assert not cfg.compose_dir.exists()


def test_scripts_localcloud_with_a_fake_docker_that_finds_no_engine(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then echo 2.29.1; exit 0; fi\n'
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOCALCLOUD_RUNTIME": "docker",
        "LOCALCLOUD_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(PROJECT_ROOT / "infra"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "localcloud", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no Docker engine answers" in done.stderr
    assert "Cannot connect to the Docker daemon" in done.stderr
    assert not (tmp_path / "state" / "endpoints.json").exists()


# --- up -------------------------------------------------------------------------------------


def test_up_starts_the_project_makes_the_roles_and_writes_the_hosts_endpoints(
    cfg: Settings,
) -> None:
    docker = FakeDocker()
    result = compose.up(cfg, docker, fake_secret, proc=cfg.state_dir / "no-proc")

    up = next(c for c in docker.calls if "up" in c.argv)
    assert up.argv == [
        "docker",
        "compose",
        "--project-name",
        cfg.compose_project,
        "--file",
        str(COMPOSE_FILE),
        "up",
        "--detach",
        "--build",
        "--wait",
    ]
    assert up.env is not None
    assert up.env["LOCALCLOUD_PORT"] == "4566" and up.env["LOCALCLOUD_PG_PORT"] == "15432"
    assert up.env["LOCALCLOUD_MONITOR_PASSWORD"] in cfg.monitor_passfile.read_text()

    data = endpoints.load(cfg.endpoints_file)
    assert data == result.endpoints
    assert set(data) == {"version", "region", "localstack", "postgres", "database_proxy"}
    assert data["localstack"]["url"] == "http://127.0.0.1:4566"
    assert (data["postgres"]["host"], data["postgres"]["port"]) == ("127.0.0.1", 15432)
    assert (data["database_proxy"]["host"], data["database_proxy"]["port"]) == ("127.0.0.1", 16432)
    assert data["postgres"]["secret_arn"].endswith(":secret:app_owner")
    pids = (data["localstack"]["pid"], data["postgres"]["pid"], data["database_proxy"]["pid"])
    assert pids == (4101, 4102, 4103)
    assert data["postgres"]["log"].endswith("logs --no-log-prefix --tail 50 postgres")


def test_the_roles_are_the_host_scripts_with_their_values_on_stdin(cfg: Settings) -> None:
    docker = FakeDocker()
    compose.up(cfg, docker, fake_secret)
    psql = [c for c in docker.calls if "psql" in c.argv]
    assert [c.argv[c.argv.index("-d") + 1] for c in psql] == ["postgres", "app"]
    assert all(c.argv[6:10] == ["exec", "-T", "--user", "postgres"] for c in psql)
    owner, proxy = (c.stdin or "" for c in psql)
    assert owner.startswith("\\set role 'app_owner'\n\\set dbname 'app'\n\\set verifier 'SCRAM-")
    assert "CREATE DATABASE" in owner
    assert "\\set monitor_verifier 'SCRAM-SHA-256$4096:" in proxy
    assert "login_verifier" in proxy
    password = json.loads(cfg.pg_credentials.read_text())["password"]
    assert all(password not in " ".join(c.argv) and password not in (c.stdin or "") for c in psql)


def test_a_value_psql_cannot_take_quoted_is_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        compose.psql_input("SELECT 1;\n", {"role": "x'; DROP ROLE app_owner; --"})


def test_a_second_up_keeps_what_the_deploy_wrote_a_new_localstack_drops_it(
    cfg: Settings,
) -> None:
    docker = FakeDocker()
    compose.up(cfg, docker, fake_secret)
    endpoints.update(cfg.endpoints_file, {"api": {"url": "http://127.0.0.1:4566/x"}})

    again = compose.up(cfg, docker, fake_secret)
    assert again.already_running and "api" in endpoints.load(cfg.endpoints_file)

    docker.pids["ls-id"] = "5101"  # LocalStack's container was recreated: it keeps no state
    fresh = compose.up(cfg, docker, fake_secret)
    assert not fresh.already_running and "api" not in endpoints.load(cfg.endpoints_file)


def test_localstacks_pid_is_the_child_of_the_containers_init(tmp_path: Path) -> None:
    children = tmp_path / "4101" / "task" / "4101" / "children"
    children.parent.mkdir(parents=True)
    children.write_text("4177 ")
    assert compose.main_process(4101, tmp_path) == 4177
    assert compose.main_process(4102, tmp_path) == 4102  # no /proc entry: the init itself


def test_the_access_rules_are_the_hosts_but_for_tcp_through_dockers_forwarding(
    cfg: Settings,
) -> None:
    compose.up(cfg, FakeDocker(), fake_secret)
    hba = (cfg.compose_dir / compose.HBA_FILE).read_text()
    assert "host all all all scram-sha-256\n" in hba
    assert "local app localcloud_proxy peer map=localcloud_proxy\n" in hba
    assert (cfg.compose_dir / compose.HBA_FILE).stat().st_mode & 0o777 == 0o644
    ident = (cfg.compose_dir / compose.IDENT_FILE).read_text()
    assert "localcloud_proxy postgres localcloud_proxy" in ident


# --- down, status, logs ---------------------------------------------------------------------


def test_down_removes_the_containers_keeps_the_volume_and_the_endpoints_go(
    cfg: Settings,
) -> None:
    docker = FakeDocker()
    compose.up(cfg, docker, fake_secret)
    docker.calls.clear()
    result = compose.down(cfg, docker, port_is_free=lambda host, port: True)
    assert not result.problems
    assert ["down", "--remove-orphans", "--timeout", "15"] in docker.compose_verbs()
    assert not any("--volumes" in verb or "-v" in verb for verb in docker.compose_verbs())
    assert not cfg.endpoints_file.exists()


def test_down_that_leaves_a_container_or_a_port_says_so_and_keeps_the_endpoints(
    cfg: Settings,
) -> None:
    docker = FakeDocker(left_after_down="ls-id\n")
    compose.up(cfg, docker, fake_secret)
    result = compose.down(cfg, docker, port_is_free=lambda host, port: port != 15432)
    assert result.problems == [
        "containers still there: ls-id",
        "port 127.0.0.1:15432 (PostgreSQL) is still bound",
    ]
    assert cfg.endpoints_file.exists()


def test_status_reads_both_shapes_of_compose_ps() -> None:
    lines = '{"Service":"postgres","State":"running","Health":"healthy"}\n' + (
        '{"Service":"localstack","State":"running","Health":"starting"}'
    )
    array = json.dumps([{"Service": "pgbouncer", "State": "exited", "Health": ""}])
    assert compose.parse_ps(lines)["localstack"]["Health"] == "starting"
    assert compose.parse_ps(array)["pgbouncer"]["State"] == "exited"
    assert compose.parse_ps("") == {}


def test_status_is_ok_only_with_all_three_healthy(cfg: Settings) -> None:
    class Ps(FakeDocker):
        rows = ""

        def __call__(
            self,
            argv: Sequence[str],
            env: Mapping[str, str] | None,
            stdin: str | None,
            timeout: float,
        ) -> Result:
            if "--format" in argv and "json" in argv:
                return Result(0, self.rows)
            return super().__call__(argv, env, stdin, timeout)

    docker = Ps()
    healthy = [{"Service": s, "State": "running", "Health": "healthy"} for s in SERVICE_IDS]
    docker.rows = "\n".join(json.dumps(r) for r in healthy)
    assert compose.status(cfg, docker).ok
    docker.rows = "\n".join(json.dumps(r) for r in healthy[:2])
    st = compose.status(cfg, docker)
    assert not st.ok and st.services[2].state == "missing"


def test_logs_name_the_service_the_host_command_names() -> None:
    cfg = Settings.from_env({})
    command = compose.logs_command(cfg, "pgbouncer", follow=True, lines=20)
    assert command[-4:] == ["--tail", "20", "--follow", "pgbouncer"]


# --- inside the container -------------------------------------------------------------------


def test_in_the_container_localstack_listens_on_all_addresses_but_names_127_0_0_1() -> None:
    cfg = Settings.from_env({})
    env = container.localstack_environment(
        cfg, {"LOCALCLOUD_MONITOR_PASSWORD": "secret", "PYTHONPATH": "/opt/localcloud/infra"}
    )
    assert env["GATEWAY_LISTEN"] == "0.0.0.0:4566"
    assert env["LOCALSTACK_HOST"] == "127.0.0.1:4566"
    assert "LOCALCLOUD_MONITOR_PASSWORD" not in env and "PYTHONPATH" not in env
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == "process"


def test_in_the_container_pgbouncer_reaches_postgresql_over_the_shared_socket() -> None:
    proxy_cfg, layout = container.proxy_settings(Settings.from_env({}))
    config = database_proxy.render_config(proxy_cfg, layout)
    assert "listen_addr = 0.0.0.0\n" in config
    assert "listen_port = 16432\n" in config
    assert f"host={container.PG_SOCKET_DIR} port=15432 dbname=app" in config
    assert "user = postgres\n" in config


def test_the_container_wants_the_monitor_password_from_the_driver() -> None:
    with pytest.raises(container.ContainerError, match="LOCALCLOUD_MONITOR_PASSWORD"):
        container.monitor_password({})
    assert container.monitor_password({"LOCALCLOUD_MONITOR_PASSWORD": "pw"}) == "pw"


def test_the_host_processes_keep_their_loopback_only_access_rules() -> None:
    assert "host all all 127.0.0.1/32 scram-sha-256\n" in render_hba("postgres")
