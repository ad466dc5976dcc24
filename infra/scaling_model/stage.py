"""The stage's settings the model needs, read from .chalice/config.json as the deploy reads them
(the function's timeout as Chalice resolves it, the trigger's and the retries' variables parsed by
the app's own settings module), and the platform's limits from where the local cloud keeps them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from chalicelib import settings as app_settings
from deployment import chalice_stage
from deployment.pipeline import MAX_RECEIVE_COUNT, VISIBILITY_PER_TIMEOUT
from localcloud import settings as cloud_settings
from localcloud.database_proxy import QUERY_WAIT_TIMEOUT_S
from localcloud_ext import contract

WORKER = "worker"
# Chalice's default when neither the stage nor the function sets lambda_memory_size.
CHALICE_DEFAULT_MEMORY_MB = 128
# PostgreSQL's superuser_reserved_connections: the app's roles cannot have these.
SUPERUSER_RESERVED_CONNECTIONS = 3


@dataclass(frozen=True)
class StageSettings:
    """What the model runs under: the trigger, the functions, the account and the database."""

    name: str
    batch_size: int
    batching_window_seconds: float
    max_concurrency: int
    worker_timeout_seconds: float
    worker_memory_mb: int
    api_memory_mb: int
    visibility_timeout_seconds: float
    max_receives: int
    backoff: app_settings.Backoff
    account_concurrency: int = int(contract.ACCOUNT_CONCURRENCY.default)
    worker_reserved_concurrency: int | None = None
    api_reserved_concurrency: int | None = None
    database_proxy: bool = True
    database_max_connections: int = cloud_settings.PG_MAX_CONNECTIONS
    proxy_max_connections: int = cloud_settings.PROXY_MAX_SERVER_CONNECTIONS
    proxy_borrow_timeout_seconds: float = QUERY_WAIT_TIMEOUT_S

    @property
    def database_client_slots(self) -> int:
        """Connections the app's roles may open straight to PostgreSQL."""
        return self.database_max_connections - SUPERUSER_RESERVED_CONNECTIONS

    def with_limits(
        self,
        *,
        max_concurrency: int | None = None,
        account_concurrency: int | None = None,
        worker_reserved_concurrency: int | None = None,
        api_reserved_concurrency: int | None = None,
        database_proxy: bool | None = None,
    ) -> StageSettings:
        """The same stage with the given limits changed (None keeps each as it is)."""
        changes: dict[str, object] = {
            "max_concurrency": max_concurrency,
            "account_concurrency": account_concurrency,
            "worker_reserved_concurrency": worker_reserved_concurrency,
            "api_reserved_concurrency": api_reserved_concurrency,
            "database_proxy": database_proxy,
        }
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _memory_mb(section: dict[str, object], function: str) -> int:
    functions = section.get("lambda_functions")
    own = functions.get(function, {}) if isinstance(functions, dict) else {}
    value = own.get("lambda_memory_size", section.get("lambda_memory_size"))
    return int(value) if isinstance(value, int | str) else CHALICE_DEFAULT_MEMORY_MB


def read_stage(stage: str, project: Path = chalice_stage.PROJECT_ROOT) -> StageSettings:
    """`stage` of the project's .chalice/config.json; a missing or invalid variable raises the
    app's own SettingMissing, naming it."""
    section = chalice_stage.stage_config(project, stage)
    variables = section.get("environment_variables", {})
    # The queue's name is the deploy's to write; the trigger's parser wants one.
    env = {app_settings.TASK_QUEUE_NAME: "modelled", **variables}
    trigger = app_settings.WorkerTrigger.from_env(env)
    timeout = chalice_stage.function_timeout(project, stage, WORKER)
    return StageSettings(
        name=stage,
        batch_size=trigger.batch_size,
        batching_window_seconds=float(trigger.batching_window_seconds),
        max_concurrency=trigger.max_concurrency,
        worker_timeout_seconds=float(timeout),
        worker_memory_mb=_memory_mb(section, WORKER),
        api_memory_mb=_memory_mb(section, chalice_stage.API_HANDLER),
        visibility_timeout_seconds=float(VISIBILITY_PER_TIMEOUT * timeout),
        max_receives=MAX_RECEIVE_COUNT,
        backoff=app_settings.Backoff.from_env(env),
    )


def stage_of_function(function_name: str, project: Path = chalice_stage.PROJECT_ROOT) -> str:
    """The stage a worker function belongs to, from the name Chalice gave it."""
    app = chalice_stage.app_name(project)
    prefix, suffix = f"{app}-", f"-{WORKER}"
    if not (function_name.startswith(prefix) and function_name.endswith(suffix)):
        raise ValueError(f"{function_name!r} is not a worker function of {app!r}")
    return function_name[len(prefix) : -len(suffix)]
