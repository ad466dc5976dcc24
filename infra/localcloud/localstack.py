"""LocalStack as a host process: ``<venv>/bin/python -m localstack.runtime.main``.

Its whole configuration is :func:`localstack_environment` (one dict; see
/work/shared/docs/localstack-without-docker.md for why each setting is there).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localcloud import procs
from localcloud.database_proxy import ADMIN_DATABASE, MONITOR_ROLE
from localcloud.settings import (
    DB_INSTANCE_IDENTIFIER,
    PG_DATABASE,
    PROXY_NAME,
    Settings,
)
from localcloud_ext import contract

logger = logging.getLogger(__name__)

HEALTH_PATH = "/_localstack/health"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
# Inherited variables that would make LocalStack's interpreter load the wrong packages.
_DROP_FROM_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")


def localstack_environment(cfg: Settings) -> dict[str, str]:
    """Every setting LocalStack gets from us, in one place."""
    listen = f"{cfg.host}:{cfg.port}"
    return {
        # the default (twisted) server ignores the bind host and listens on 0.0.0.0
        "GATEWAY_LISTEN": listen,
        "GATEWAY_SERVER": "hypercorn",
        # queue URLs etc. point here; *.localhost.localstack.cloud does not resolve offline
        "LOCALSTACK_HOST": listen,
        "SQS_ENDPOINT_STRATEGY": "path",
        # the machine image has /.dockerenv; we are not in LocalStack's container
        "OVERRIDE_IN_DOCKER": "0",
        # its DNS server would try to bind 0.0.0.0:53
        "DNS_ADDRESS": "0",
        # the offline analytics upload aborts shutdown (process, port, functions stay alive)
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        # otherwise every SQS call publishes metrics to itself: 4x slower, minutes of 100% CPU
        "SQS_DISABLE_CLOUDWATCH_METRICS": "1",
        "EAGER_SERVICE_LOADING": "0",
        # LocalStack's calls to itself (Lambda's logs and metrics, one pair per invoke) go
        # straight to its gateway object rather than over HTTP: no CPU left burning after a
        # burst (measured 20% -> 0.2% 5 s after 2,000 invokes), nothing to hang at shutdown.
        "IN_MEMORY_CLIENT": "1",
        # CreateFunction answers once the function is Active (our executor takes ~0.1 s), so
        # deploy tools' `function_active` waiters never sleep their 5 s between polls.
        "LAMBDA_SYNCHRONOUS_CREATE": "1",
        # The stock SQS poller (still used for FIFO queues; standard queues get our scaling
        # one, localcloud_ext.batch_threads, whose control tick paces itself) waits 1 s after
        # every poll, a full one too, and backs off up to 10 s when the queue is empty; AWS
        # long-polls without pausing. No pause after a poll, at most 1 s after an empty one.
        "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC": "0",
        "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": "1",
        "PERSISTENCE": "0",
        # keep LocalStack's files in the state dir (S3 storage stays /tmp/localstack-s3-storage:
        # hard-coded in localstack.services.s3.provider)
        "FILESYSTEM_ROOT": str(cfg.localstack_root),
        "TMPDIR": str(cfg.state_dir / "tmp"),
        "CONFIG_DIR": str(cfg.localstack_root / "config"),
        # plux (LocalStack's plugin loader) caches its entry-point index in $XDG_CACHE_HOME/plux
        "XDG_CACHE_HOME": str(cfg.state_dir / "cache"),
        # Lambda: the `process` executor from infra/localstack-extension (localcloud_ext)
        "LAMBDA_RUNTIME_EXECUTOR": "process",
        contract.RUNTIMES_DIR_VARIABLE: str(cfg.runtimes_dir),
        contract.PIDS_DIR_VARIABLE: str(cfg.functions_pids_dir),
        # read by localcloud_ext.cgroups: a memory and a pids cgroup per execution environment
        contract.MEMORY_CGROUP_VARIABLE: str(cfg.cgroup_parents[0]),
        contract.PIDS_CGROUP_VARIABLE: str(cfg.cgroup_parents[1]),
        # read by the scaling SQS poller (localcloud_ext.seams)
        contract.ESM_SCALE_UP_PER_MINUTE.variable: contract.ESM_SCALE_UP_PER_MINUTE.render(
            cfg.esm_scale_up_per_minute
        ),
        # The account's concurrency, shared by all functions: LocalStack throttles a sync invoke
        # that finds no room (429 TooManyRequestsException). Its minimum unreserved (100 by
        # default) follows a lower limit, or no reserved concurrency could be set under 100.
        "LAMBDA_LIMITS_CONCURRENT_EXECUTIONS": str(cfg.account_concurrency),
        "LAMBDA_LIMITS_MINIMUM_UNRESERVED_CONCURRENCY": str(
            contract.minimum_unreserved_concurrency(cfg.account_concurrency)
        ),
        "AWS_DEFAULT_REGION": cfg.region,
        **database_metrics_environment(cfg),
    }


def database_metrics_environment(cfg: Settings) -> dict[str, str]:
    """Where the extension reads the database's and the proxy's connection counts, as the
    metrics reader (its password in a libpq password file, never in the environment)."""

    def conninfo(port: int, dbname: str) -> str:
        return (
            f"host={cfg.host} port={port} dbname={dbname} user={MONITOR_ROLE} "
            f"passfile={cfg.monitor_passfile} connect_timeout=2 application_name=localcloud-metrics"
        )

    return {
        contract.DB_METRICS_POSTGRES_VARIABLE: conninfo(cfg.pg_port, PG_DATABASE),
        contract.DB_METRICS_PROXY_VARIABLE: conninfo(cfg.proxy_port, ADMIN_DATABASE),
        contract.DB_INSTANCE_IDENTIFIER_VARIABLE: DB_INSTANCE_IDENTIFIER,
        contract.DB_PROXY_NAME_VARIABLE: PROXY_NAME,
    }


def process_environment(cfg: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment (minus Python path variables) + :func:`localstack_environment`."""
    env = {
        k: v for k, v in (os.environ if base is None else base).items() if k not in _DROP_FROM_ENV
    }
    env.update(localstack_environment(cfg))
    return env


def health(cfg: Settings, timeout: float = 2.0) -> dict[str, Any] | None:
    """The parsed health document, or None when LocalStack does not answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(cfg.localstack_url + HEALTH_PATH, timeout=timeout) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = json.loads(response.read())
            return body
    except (OSError, ValueError, urllib.error.URLError):
        return None


def running_record(cfg: Settings) -> procs.ProcessRecord | None:
    """Our LocalStack process, if its pid file names a live process with the recorded start time."""
    record = procs.read_pidfile(cfg.localstack_pidfile)
    return record if record is not None and record.is_running() else None


def _rotate(log: Path) -> None:
    if log.exists() and log.stat().st_size > 0:
        log.replace(log.with_suffix(log.suffix + ".1"))


# LocalStack holds about 3 descriptors per execution environment (its output pipe, its Runtime
# API's socket and connection; measured 909 at 300 environments): 1,000 concurrent executions
# need over 3,000, and many systems give a process 1,024 unless it asks for more.
OPEN_FILES_WANTED = 65536


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's soft limit of open files towards `wanted` (never above the hard
    limit), so that LocalStack, started from here, inherits it. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def launch_command(cfg: Settings) -> list[str]:
    """LocalStack's runtime, run by its own venv's interpreter (here and in the container)."""
    return [str(cfg.localstack_python), "-m", "localstack.runtime.main"]


def prepare_state(cfg: Settings) -> None:
    """The folders LocalStack and the extension write to, and a fresh plugin index."""
    for d in (cfg.logs_dir, cfg.run_dir, cfg.functions_pids_dir, cfg.state_dir / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    # plux keys its entry-point index by the venv's path, not by what is installed: after the
    # extension gains an entry point (a new hook), a kept index would silently leave it out.
    # Rebuilding it costs well under a second of start-up.
    shutil.rmtree(cfg.state_dir / "cache" / "plux", ignore_errors=True)


def start(cfg: Settings) -> procs.ProcessRecord:
    """Launch LocalStack in its own process group; return at once (see :func:`wait_healthy`)."""
    open_files = raise_open_files_limit()
    if open_files < OPEN_FILES_WANTED:
        logger.info(
            "LocalStack may open %d files (hard limit): about %d concurrent executions",
            open_files,
            open_files // 3,
        )
    prepare_state(cfg)
    _rotate(cfg.localstack_log)
    logger.info("starting LocalStack on %s (log: %s)", cfg.localstack_url, cfg.localstack_log)
    with cfg.localstack_log.open("ab") as log:
        child = subprocess.Popen(
            launch_command(cfg),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=process_environment(cfg),
            cwd=str(cfg.state_dir),
            start_new_session=True,
            preexec_fn=_raise_open_files_limit,
        )
    record = procs.ProcessRecord.of(child.pid)
    if record is None:  # died at once
        child.wait()
        raise LocalStackError(f"LocalStack exited immediately (code {child.returncode})", cfg)
    procs.write_pidfile(cfg.localstack_pidfile, record)
    # Not waited for by us once `up` returns; the pid file is what `down` uses.
    child.returncode = 0  # silence ResourceWarning "subprocess still running" at exit
    return record


# LocalStack holds a few descriptors per execution environment (its Runtime API endpoint and
# connection, the output pipe): a thousand environments need more than a default soft limit of
# 1,024 open files.
LOCALSTACK_OPEN_FILES = 65536


def _raise_open_files_limit() -> None:
    """In LocalStack's process, before exec: open files up to LOCALSTACK_OPEN_FILES (or the hard
    limit, if lower)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (
        LOCALSTACK_OPEN_FILES
        if hard == resource.RLIM_INFINITY
        else min(hard, LOCALSTACK_OPEN_FILES)
    )
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class LocalStackError(RuntimeError):
    def __init__(self, message: str, cfg: Settings) -> None:
        super().__init__(f"{message}; log: {cfg.localstack_log}\n{log_tail(cfg.localstack_log)}")


def log_tail(path: Path, lines: int = 30, indent: str = "    ") -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "".join(indent + line for line in text.splitlines(keepends=True)[-lines:])


def wait_healthy(
    cfg: Settings, record: procs.ProcessRecord, timeout: float = START_TIMEOUT_S
) -> None:
    """Poll the health endpoint until it answers; fail fast if the process dies."""
    died = False

    def ready() -> bool:
        nonlocal died
        if not record.is_running():
            died = True
            return True
        return health(cfg, timeout=1.0) is not None

    ok = procs.poll(ready, timeout, interval=0.2)
    if died:
        raise LocalStackError("LocalStack exited during start-up", cfg)
    if not ok:
        raise LocalStackError(
            f"LocalStack did not answer {HEALTH_PATH} within {timeout:.0f} s", cfg
        )


def stop(cfg: Settings, record: procs.ProcessRecord | None) -> str:
    if record is None:
        return "localstack: not running"
    return procs.stop(record, "localstack", grace=STOP_GRACE_S, group=True)
