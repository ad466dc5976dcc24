"""``scripts/localcloud up | down | status | logs`` (run with the tools venv).

``LOCALCLOUD_RUNTIME`` chooses who runs the servers: host processes (``localcloud.control``, the
default) or containers (``localcloud.compose``); each has its own row of commands below.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from localcloud import compose, control, localstack
from localcloud.settings import Runtime, Settings, SettingsError

LOGS_COMMAND = "scripts/localcloud logs [-f] [postgres|pgbouncer]"


def _print_endpoints(cfg: Settings, data: dict[str, object], logs: str) -> None:
    """What `up` prints of the running local cloud, host processes or containers alike."""
    print(json.dumps({k: v for k, v in data.items() if k != "version"}, indent=2, sort_keys=True))
    print(f"endpoints: {cfg.endpoints_file}")
    print(f"logs:      {logs}")
    print(
        f"AWS:       AWS_ENDPOINT_URL={cfg.localstack_url} AWS_DEFAULT_REGION={cfg.region} "
        "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
    )


def cmd_up(cfg: Settings) -> int:
    try:
        result = control.up(cfg)
    except control.UpError as e:
        print(f"up failed: {e}", file=sys.stderr)
        print(
            "nothing started by this `up` is left running; see `scripts/localcloud status`",
            file=sys.stderr,
        )
        return 1
    state = "already running" if result.already_running else f"up in {result.seconds:.1f} s"
    print(f"local cloud {state}:")
    _print_endpoints(
        cfg,
        result.endpoints,
        f"{cfg.localstack_log}  {cfg.pg_log}  {cfg.proxy_log}\n           ({LOGS_COMMAND})",
    )
    print("stop with: scripts/localcloud down")
    return 0


def cmd_down(cfg: Settings) -> int:
    result = control.down(cfg)
    for message in result.messages:
        print(message)
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if result.problems:
        print(
            f"down incomplete after {result.seconds:.1f} s; state kept in {cfg.state_dir}",
            file=sys.stderr,
        )
        return 1
    print(
        f"down in {result.seconds:.1f} s: nothing recorded still runs; ports "
        f"{cfg.port}, {cfg.pg_port} and {cfg.proxy_port} are free"
    )
    return 0


def cmd_status(cfg: Settings) -> int:
    st = control.status(cfg)
    ls = (
        (
            f"pid {st.localstack_pid}, {cfg.localstack_url}, "
            f"{'healthy' if st.localstack_healthy else 'NOT answering'}"
        )
        if st.localstack_pid
        else "not running"
    )
    pg = (
        (
            f"pid {st.postgres_pid}, {cfg.host}:{cfg.pg_port}, "
            f"{'ready' if st.postgres_ready else 'NOT ready'}"
        )
        if st.postgres_pid
        else "not running"
    )
    proxy = (
        (
            f"pid {st.proxy_pid}, {cfg.host}:{cfg.proxy_port}, "
            f"{'listening' if st.proxy_listening else 'NOT listening'}"
        )
        if st.proxy_pid
        else "not running"
    )
    print(f"localstack: {ls}")
    print(f"postgres:   {pg}")
    print(f"db proxy:   {proxy}")
    print(
        f"functions:  {len(st.functions)} process(es)"
        + "".join(f"\n  {env_id}: pid {pid}" for env_id, pid in st.functions)
    )
    if st.memory is not None and (st.memory.environments or st.memory.support_processes):
        m = st.memory
        print(
            f"memory:     {m.environments} execution environment(s), "
            f"Pss {m.environments_pss_bytes / 2**20:.1f} MiB "
            f"({m.pss_per_environment_bytes / 2**20:.1f} MiB each); "
            f"templates and snapshots {m.support_processes}, "
            f"Pss {m.support_pss_bytes / 2**20:.1f} MiB"
        )
    print(f"state:      {cfg.state_dir}")
    if st.ok:
        print(f"endpoints:  {cfg.endpoints_file}")
        return 0
    print("not (fully) running: scripts/localcloud up")
    return 3


def cmd_logs(cfg: Settings, which: str, follow: bool, lines: int) -> int:
    path = {"postgres": cfg.pg_log, "pgbouncer": cfg.proxy_log}.get(which, cfg.localstack_log)
    if not path.exists():
        print(f"no log yet at {path}", file=sys.stderr)
        return 1
    if follow:
        os.execvp("tail", ["tail", "-n", str(lines), "-F", str(path)])
    print(localstack.log_tail(path, lines, indent=""), end="")
    return 0


# --- the local cloud as containers (LOCALCLOUD_RUNTIME=docker) -----------------------------


def cmd_up_docker(cfg: Settings) -> int:
    try:
        result = compose.up(cfg)
    except control.UpError as e:
        print(f"up failed: {e}", file=sys.stderr)
        print(
            "containers that started are left for a look: `scripts/localcloud status`, "
            "`scripts/localcloud logs`, then `scripts/localcloud down`",
            file=sys.stderr,
        )
        return 1
    state = "already running" if result.already_running else f"up in {result.seconds:.1f} s"
    print(f"local cloud (containers, project {cfg.compose_project}) {state}:")
    _print_endpoints(cfg, result.endpoints, LOGS_COMMAND)
    print("stop with: LOCALCLOUD_RUNTIME=docker scripts/localcloud down")
    return 0


def cmd_down_docker(cfg: Settings) -> int:
    try:
        result = compose.down(cfg)
    except control.UpError as e:
        print(f"down failed: {e}", file=sys.stderr)
        return 1
    for message in result.messages:
        print(message)
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if result.problems:
        return 1
    print(
        f"down in {result.seconds:.1f} s: ports {cfg.port}, {cfg.pg_port} and "
        f"{cfg.proxy_port} are free"
    )
    return 0


def cmd_status_docker(cfg: Settings) -> int:
    try:
        st = compose.status(cfg)
    except control.UpError as e:
        print(f"status failed: {e}", file=sys.stderr)
        return 1
    ports = {
        compose.LOCALSTACK_SERVICE: cfg.port,
        compose.POSTGRES_SERVICE: cfg.pg_port,
        compose.PROXY_SERVICE: cfg.proxy_port,
    }
    for service in st.services:
        health = f", {service.health}" if service.health else ""
        print(
            f"{service.service + ':':<11} {service.state}{health}, "
            f"{cfg.host}:{ports[service.service]} (container)"
        )
    print(f"state:      {cfg.state_dir} (project {cfg.compose_project})")
    if st.ok:
        print(f"endpoints:  {cfg.endpoints_file}")
        return 0
    print("not (fully) running: LOCALCLOUD_RUNTIME=docker scripts/localcloud up")
    return 3


def cmd_logs_docker(cfg: Settings, which: str, follow: bool, lines: int) -> int:
    command = compose.logs_command(cfg, which, follow, lines)
    os.execvpe(command[0], command, {**os.environ, **compose.query_environment(cfg)})


Commands = tuple[
    Callable[[Settings], int],
    Callable[[Settings], int],
    Callable[[Settings], int],
    Callable[[Settings, str, bool, int], int],
]
# up, down, status, logs: for each runtime
COMMANDS: dict[Runtime, Commands] = {
    Runtime.HOST: (cmd_up, cmd_down, cmd_status, cmd_logs),
    Runtime.DOCKER: (cmd_up_docker, cmd_down_docker, cmd_status_docker, cmd_logs_docker),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/localcloud",
        description="LocalStack + PostgreSQL + its proxy on this host "
        "(LOCALCLOUD_RUNTIME=docker: as containers)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start (or confirm running) and print the endpoints")
    sub.add_parser("down", help="stop everything this tool started, verify nothing is left")
    sub.add_parser("status", help="what runs where; exit 3 when not running")
    logs = sub.add_parser("logs", help="tail LocalStack's (or PostgreSQL's) log")
    logs.add_argument(
        "which", nargs="?", choices=["localstack", "postgres", "pgbouncer"], default="localstack"
    )
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=50)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = Settings.from_env()
    except SettingsError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    run_up, run_down, run_status, run_logs = COMMANDS[cfg.runtime]
    if args.command == "up":
        return run_up(cfg)
    if args.command == "down":
        return run_down(cfg)
    if args.command == "status":
        return run_status(cfg)
    return run_logs(cfg, args.which, args.follow, args.lines)
