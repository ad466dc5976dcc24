"""The local cloud's image's entry point: ``python -m localcloud.container SERVER``.

Runs inside the image built from ``infra/localcloud/Dockerfile`` (LOCALCLOUD_RUNTIME=docker):
the same settings (``Settings.from_env``), LocalStack environment
(``localstack.localstack_environment``) and PgBouncer configuration
(``database_proxy.render_config``) as the host processes, with only what a container changes:

* LocalStack's gateway and PgBouncer listen on every address of the container, since Docker's
  port forwarding reaches them on the container's own address; everything else still names
  127.0.0.1, which in the shared network namespace (docker-compose.localstack.yml) means the
  same server inside the containers (functions, the extension, PgBouncer) as on the host;
* PgBouncer reaches PostgreSQL over the unix socket on a volume both containers mount;
* the metrics reader's password arrives in LOCALCLOUD_MONITOR_PASSWORD (from the host's state
  dir, through ``localcloud.compose``), and is written where ``Settings`` expects it.

Commands: ``localstack`` and ``pgbouncer`` (become the server: exec), ``health localstack|
pgbouncer`` (the compose file's health checks). Stdlib only: it runs on the image's Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from localcloud import database_proxy, localstack
from localcloud.postgres import SERVER_USER_WHEN_ROOT, scram_sha256_verifier, write_monitor_passfile
from localcloud.settings import ENV_MONITOR_PASSWORD, Settings

# Every address of the container: Docker forwards the host's 127.0.0.1:PORT to the container's
# own address, which a server bound to 127.0.0.1 would never see.
LISTEN_ALL = "0.0.0.0"
# Where the official postgres image puts its socket (and the volume the proxy mounts it from).
PG_SOCKET_DIR = Path("/var/run/postgresql")


class ContainerError(RuntimeError):
    """The container cannot start its server; the message says what is missing."""


def monitor_password(env: Mapping[str, str]) -> str:
    try:
        password = env[ENV_MONITOR_PASSWORD]
    except KeyError:
        raise ContainerError(
            f"{ENV_MONITOR_PASSWORD} is not set: start the containers with "
            "`LOCALCLOUD_RUNTIME=docker scripts/localcloud up`, which passes it"
        ) from None
    if not password:
        raise ContainerError(f"{ENV_MONITOR_PASSWORD} is empty")
    return password


def localstack_environment(cfg: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The host's LocalStack environment, with the gateway on every address of the container
    (LOCALSTACK_HOST, the address in queue URLs, stays 127.0.0.1:PORT)."""
    env = localstack.process_environment(cfg, base)
    env["GATEWAY_LISTEN"] = f"{LISTEN_ALL}:{cfg.port}"
    env.pop(ENV_MONITOR_PASSWORD, None)  # in the passfile; LocalStack's children need not see it
    return env


def proxy_settings(cfg: Settings) -> tuple[Settings, database_proxy.ProxyLayout]:
    """PgBouncer's settings in the container: listening on every address, PostgreSQL over the
    shared socket, as the postgres user (uid 999 in both images: peer authentication of the
    proxy's lookup role compares the socket's peer uid with the server's own passwd)."""
    return (
        dataclasses.replace(cfg, host=LISTEN_ALL),
        database_proxy.ProxyLayout(PG_SOCKET_DIR, cfg.pg_port, SERVER_USER_WHEN_ROOT),
    )


def run_localstack(cfg: Settings, env: Mapping[str, str]) -> None:
    passfile = cfg.monitor_passfile
    passfile.unlink(missing_ok=True)  # a restarted container keeps its files
    write_monitor_passfile(passfile, monitor_password(env))
    localstack.prepare_state(cfg)
    localstack.raise_open_files_limit()
    command = localstack.launch_command(cfg)
    os.execve(command[0], command, localstack_environment(cfg, env))


def run_pgbouncer(cfg: Settings, env: Mapping[str, str]) -> None:
    proxy_cfg, layout = proxy_settings(cfg)
    config = database_proxy.write_files(
        proxy_cfg, layout, scram_sha256_verifier(monitor_password(env))
    )
    resource.setrlimit(
        resource.RLIMIT_NOFILE,
        database_proxy.nofile_limit(
            resource.getrlimit(resource.RLIMIT_NOFILE), database_proxy.NEEDED_FILES, True
        ),
    )
    binary = str(database_proxy.find_binary())
    os.execv(binary, [binary, str(config)])


def healthy(cfg: Settings, server: str) -> bool:
    if server == "localstack":
        return localstack.health(cfg) is not None
    return database_proxy.accepts_connections(cfg)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localcloud.container")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("localstack", help="become LocalStack (with the extension)")
    sub.add_parser("pgbouncer", help="become PgBouncer, the database proxy")
    health = sub.add_parser("health", help="exit 0 when the server answers")
    health.add_argument("server", choices=["localstack", "pgbouncer"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = Settings.from_env()
    if args.command == "health":
        return 0 if healthy(cfg, args.server) else 1
    try:
        (run_localstack if args.command == "localstack" else run_pgbouncer)(cfg, os.environ)
    except (ContainerError, database_proxy.ProxyError) as e:
        print(f"localcloud container: {e}", file=sys.stderr)
        return 1
    return 0  # not reached: the run_* functions exec the server


if __name__ == "__main__":
    sys.exit(main())
