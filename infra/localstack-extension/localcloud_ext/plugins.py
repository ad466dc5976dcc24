"""Entry points LocalStack discovers through plux (see pyproject.toml)."""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """Chosen with LAMBDA_RUNTIME_EXECUTOR=process."""

    name = "process"

    def load(self, *args: Any, **kwargs: Any) -> type:
        from localcloud_ext.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
