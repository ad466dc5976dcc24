"""The database proxy's files and limits as the local cloud writes them (PgBouncer's ini, its auth
file, PostgreSQL's hba and ident entries), its install step, and the deploy's switch."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest

from deployment import pipeline
from deployment.chalice_stage import DeployError
from localcloud import database_proxy, install, localstack, postgres
from localcloud.database_proxy import ProxyError, ProxyLayout
from localcloud.settings import (
    DB_INSTANCE_CLASS,
    PG_MAX_CONNECTIONS,
    PROXY_MAX_CLIENT_CONNECTIONS,
    PROXY_MAX_SERVER_CONNECTIONS,
    Settings,
    SettingsError,
)


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"LOCALCLOUD_STATE_DIR": str(tmp_path / "state"), "LOCALCLOUD_PROXY_PORT": "16704"}
    )


def ini(cfg: Settings, run_as: str | None = "postgres") -> dict[str, str]:
    """The [pgbouncer] and [databases] settings as one dict."""
    text = database_proxy.render_config(cfg, ProxyLayout(cfg.pg_socket_dir, 15704, run_as))
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_max_connections_is_that_of_a_db_t4g_micro() -> None:
    assert DB_INSTANCE_CLASS == "db.t4g.micro"
    assert PG_MAX_CONNECTIONS == 112  # LEAST(1 GiB / 9531392, 5000)


def test_the_proxy_listens_on_loopback_only_and_pools_transactions(cfg: Settings) -> None:
    settings = ini(cfg)

    assert (settings["listen_addr"], settings["listen_port"]) == ("127.0.0.1", "16704")
    assert settings["unix_socket_dir"] == ""
    assert settings["pool_mode"] == "transaction"


def test_server_connections_are_bounded_whatever_the_clients(cfg: Settings) -> None:
    settings = ini(cfg)

    assert int(settings["max_db_connections"]) == PROXY_MAX_SERVER_CONNECTIONS
    assert int(settings["default_pool_size"]) <= PROXY_MAX_SERVER_CONNECTIONS
    assert settings["reserve_pool_size"] == "0"
    assert int(settings["max_client_conn"]) >= 1000 > PROXY_MAX_SERVER_CONNECTIONS
    assert PROXY_MAX_SERVER_CONNECTIONS < PG_MAX_CONNECTIONS - 3  # room for the owner, admins


def test_the_proxy_reaches_postgresql_on_its_socket_and_looks_roles_up(cfg: Settings) -> None:
    settings = ini(cfg)

    assert settings["app"] == (
        f"host={cfg.pg_socket_dir} port=15704 dbname=app auth_user=localcloud_proxy"
    )
    assert settings["auth_type"] == "scram-sha-256"
    assert "login_verifier($1)" in settings["auth_query"]
    assert settings["stats_users"] == "localcloud_monitor"


def test_as_root_it_switches_to_the_server_user_itself(cfg: Settings) -> None:
    assert ini(cfg, "postgres")["user"] == "postgres"
    assert "user" not in ini(cfg, None)


def test_the_auth_file_holds_only_the_monitor_verifier() -> None:
    verifier = postgres.scram_sha256_verifier("secret", salt=b"0" * 16)

    text = database_proxy.render_auth_file(verifier)

    assert text == f'"localcloud_monitor" "{verifier}"\n'
    assert "secret" not in text.replace(verifier, "")


def test_postgresql_lets_the_proxy_role_in_by_peer_and_clients_by_scram_only() -> None:
    hba = [line.split() for line in postgres.render_hba("postgres").splitlines()[1:]]

    assert hba == [
        ["local", "all", "postgres", "peer"],
        ["local", "app", "localcloud_proxy", "peer", "map=localcloud_proxy"],
        ["local", "all", "all", "scram-sha-256"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
    ]
    assert postgres.render_ident("postgres").splitlines()[1] == (
        "localcloud_proxy postgres localcloud_proxy"
    )


@pytest.mark.parametrize(
    ("current", "root", "expected"),
    [
        ((1024, 4096), False, (2200, 4096)),
        ((1024, 1024), True, (2200, 2200)),
        ((20000, 20000), False, (20000, 20000)),
        ((1024, resource.RLIM_INFINITY), False, (2200, resource.RLIM_INFINITY)),
    ],
)
def test_the_open_files_limit_is_raised_to_what_the_clients_need(
    current: tuple[int, int], root: bool, expected: tuple[int, int]
) -> None:
    assert database_proxy.nofile_limit(current, 2200, root) == expected


def test_a_hard_limit_too_low_without_root_says_how_to_raise_it() -> None:
    with pytest.raises(ProxyError, match=r"ulimit -Hn 2200"):
        database_proxy.nofile_limit((1024, 1024), 2200, root=False)
    assert database_proxy.NEEDED_FILES > PROXY_MAX_CLIENT_CONNECTIONS


def test_the_proxy_port_has_a_default_and_must_differ_from_the_others() -> None:
    assert Settings.from_env({}).proxy_port == 16432
    with pytest.raises(SettingsError, match="LOCALCLOUD_PG_PORT and LOCALCLOUD_PROXY_PORT"):
        Settings.from_env({"LOCALCLOUD_PG_PORT": "16000", "LOCALCLOUD_PROXY_PORT": "16000"})


def test_localstack_reads_the_connection_counts_with_a_password_file(cfg: Settings) -> None:
    environment = localstack.localstack_environment(cfg)

    postgres_dsn = environment["LOCALCLOUD_DB_METRICS_POSTGRES"]
    proxy_dsn = environment["LOCALCLOUD_DB_METRICS_PROXY"]
    assert f"passfile={cfg.monitor_passfile}" in postgres_dsn
    assert "password" not in postgres_dsn.replace("passfile", "")
    assert f"port={cfg.proxy_port} dbname=pgbouncer" in proxy_dsn
    assert environment["LOCALCLOUD_DB_INSTANCE_IDENTIFIER"] == "localcloud-postgres"
    assert environment["LOCALCLOUD_DB_PROXY_NAME"] == "localcloud-proxy"


def test_the_monitor_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "monitor.pgpass"

    first = postgres.load_or_create_monitor_password(path)

    assert postgres.load_or_create_monitor_password(path) == first
    assert path.read_text() == f"*:*:*:localcloud_monitor:{first}\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_setup_without_root_says_how_to_install_pgbouncer() -> None:
    with pytest.raises(install.InstallError, match="as root.*apt-get install pgbouncer"):
        install.ensure_database_proxy(which=lambda _: None, is_root=False, candidates=())


def test_setup_leaves_an_installed_pgbouncer_alone() -> None:
    found = {"pgbouncer": "/usr/sbin/pgbouncer"}

    assert not install.ensure_database_proxy(which=found.get, is_root=False, candidates=())


RUNNING: dict[str, Any] = {"database_proxy": {"host": "127.0.0.1", "port": 16704}}


def test_the_deploy_points_the_functions_at_the_proxy_unless_told_not_to() -> None:
    assert pipeline.database_proxy_endpoint(RUNNING, through_proxy=True) == "127.0.0.1:16704"
    assert pipeline.database_proxy_endpoint(RUNNING, through_proxy=False) == ""


def test_a_local_cloud_without_a_proxy_stops_the_deploy_with_the_fix() -> None:
    with pytest.raises(DeployError, match="--no-database-proxy"):
        pipeline.database_proxy_endpoint({}, through_proxy=True)


def test_scripts_deploy_takes_the_no_database_proxy_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployment import __main__ as cli

    asked: list[tuple[str, bool]] = []

    def deploy(cfg: Settings, *, stage: str, database_proxy: bool) -> Any:
        asked.append((stage, database_proxy))
        raise DeployError("stop here")

    monkeypatch.setattr(pipeline, "deploy", deploy)

    assert cli.main(["deploy", "--no-database-proxy"]) == 2
    assert cli.main(["deploy"]) == 2
    assert cli.main(["deploy", "--stage", "fullscale"]) == 2
    assert asked == [("local", False), ("local", True), ("fullscale", True)]
