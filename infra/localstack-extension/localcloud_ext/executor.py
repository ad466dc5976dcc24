"""LocalStack's RuntimeExecutor, backed by OS processes instead of Docker containers.

The Go init in LocalStack's Docker image serves the Lambda Runtime API inside the container and
calls LocalStack back over HTTP (`/_localstack_lambda/...`) for readiness, logs and results. Here
the Runtime API server lives in LocalStack's own process, so an invocation is handed over and
its result returned in memory: no extra gateway requests per invoke.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.executor_endpoint import (
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor
from localstack.utils.strings import to_bytes

from localcloud_ext import cgroups, forkserver, lambda_logs, runtimes, snapstart
from localcloud_ext.environment import (
    EnvironmentStopped,
    FunctionSpec,
    InitFailed,
    Launcher,
    ProcessEnvironment,
)
from localcloud_ext.log_shipper import LogEvent

LOG = logging.getLogger(__name__)

# LocalStack's variables for its Docker init; a process environment has no use for them.
_INIT_ONLY_VARIABLES = (
    "LOCALSTACK_RUNTIME_ID",
    "LOCALSTACK_RUNTIME_ENDPOINT",
    "LOCALSTACK_FUNCTION_ACCOUNT_ID",
)


class ProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002 - LocalStack's signature
        super().__init__(id, function_version)
        self._environment: ProcessEnvironment | None = None

    def _spec(self, env_vars: dict[str, str]) -> FunctionSpec:
        config = self.function_version.config
        code = config.code
        if code is None:
            raise StatusErrorException(
                "Environment startup failed", payload=b"function has no code"
            )
        environment = {
            name: str(value) for name, value in env_vars.items() if name not in _INIT_ONLY_VARIABLES
        }
        if self._snapstart:
            environment = snapstart.environment_of(environment)
        return FunctionSpec(
            environment_id=self.id,
            function_name=self.function_version.id.function_name,
            version=self.function_version.id.qualifier,
            runtime=str(config.runtime),
            handler=str(config.handler),
            interpreter=runtimes.interpreter_for(config.runtime),
            task_root=Path(code.get_unzipped_code_location()),
            timeout_seconds=int(config.timeout),
            memory_size_mb=int(config.memory_size),
            environment=environment,
            layer_roots=tuple(
                Path(layer.code.get_unzipped_code_location())
                for layer in config.layers
                if layer.code is not None
            ),
            pids_dir=runtimes.pids_dir(),
            cgroup_parents=cgroups.parents(),
        )

    @property
    def _snapstart(self) -> bool:
        return snapstart.applies(
            self.function_version.config.snap_start, self.function_version.id.qualifier
        )

    def start(self, env_vars: dict[str, str]) -> None:
        spec = self._spec(env_vars)
        launcher: Launcher | None = None
        snapshot_launcher: snapstart.SnapshotLauncher | None = None
        if self._snapstart:
            snapshot_launcher = snapstart.launcher_for(self.function_version.qualified_arn, spec)
            launcher = snapshot_launcher
        # The environment ships its log events itself, as they happen (init's too).
        log_sink = lambda_logs.sink_for(self.function_version, self.id)
        self._environment = ProcessEnvironment(spec, launcher=launcher, log_sink=log_sink)
        try:
            self._environment.start()
            if snapshot_launcher is not None:
                self._write_snapshot_init_log(snapshot_launcher.snapshot.take_init_logs())
        except InitFailed as failure:
            if isinstance(failure, snapstart.SnapshotInitFailed):
                self._write_snapshot_init_log(failure.events)
            if failure.api_error:
                # The Invoke API's own error (400 SnapStartException, 408 ...), as on AWS;
                # `answer_snapstart_failures_as_api_errors` lets it through LocalStack.
                raise api_error(failure) from failure
            # LocalStack answers the invoke with this payload as an Unhandled function error.
            raise StatusErrorException(
                "Environment startup failed", payload=failure.payload
            ) from failure
        except EnvironmentStopped as stopped:
            raise ShutdownDuringStartup(str(stopped)) from stopped

    def _write_snapshot_init_log(self, events: list[LogEvent]) -> None:
        """The version's init (its snapshot's), in a stream of its own: it belongs to no
        environment, and is older than what the environment that waited for it logged."""
        if events:
            sink = lambda_logs.sink_for(self.function_version, f"{self.id}-snapshot-init")
            for event in events:
                sink.write(event)

    def stop(self) -> None:
        if self._environment is not None:
            self._environment.stop()

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        if self._environment is None:
            raise RuntimeError(f"execution environment {self.id} was not started")
        outcome = self._environment.invoke(
            request_id=payload["invoke-id"],
            payload=to_bytes(payload["payload"]),
            invoked_function_arn=payload["invoked-function-arn"],
            trace_id=payload.get("trace-id") or "",
        )
        return InvocationResult(outcome.request_id, outcome.payload, outcome.is_error, outcome.logs)

    def get_logs(self) -> str:
        return self._environment.logs() if self._environment is not None else ""

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        # Only the Docker init calls LocalStack back; nothing uses this here.
        return f"http://127.0.0.1/_localstack_lambda/{self.id}"

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        """Fail the function (State: Failed, with the reason) when its runtime cannot run here."""
        runtimes.interpreter_for(function_version.config.runtime)
        if function_version.config.code is not None:
            function_version.config.code.prepare_for_execution()
        for layer in function_version.config.layers:
            if layer.code is not None:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """End the version's SnapStart snapshot, if it has one; LocalStack removes the code."""
        snapstart.discard(function_version.qualified_arn)

    @classmethod
    def validate_environment(cls) -> bool:
        available = runtimes.available_runtimes()
        if not available:
            LOG.warning(
                "No Lambda runtimes under %s=%s: run scripts/setup",
                runtimes.RUNTIMES_DIR_VARIABLE,
                runtimes.runtimes_dir(),
            )
            return False
        LOG.info("process executor: Lambda runtimes available: %s", ", ".join(available))
        return True


@hooks.on_infra_shutdown()
def stop_runtime_templates() -> None:
    """LocalStack stops: end the SnapStart snapshots and the runtime templates. Their children are
    killed as the channels close (forkserver.Forkserver._gone), and their cgroups removed."""
    snapstart.discard_all()
    forkserver.close_templates()


def api_error(failure: InitFailed) -> Exception:
    """LocalStack's exception for the Lambda API error `failure.api_error`, with its message."""
    from localstack.aws.api import lambda_ as lambda_api

    error_class = getattr(lambda_api, failure.api_error)
    message = json.loads(failure.payload).get("errorMessage", failure.api_error)
    error: Exception = error_class(message)
    return error
