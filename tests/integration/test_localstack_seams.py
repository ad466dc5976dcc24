"""The LocalStack internals our extension plugs into or patches are still what it was written
against. Runs in LocalStack's own interpreter; fails loudly when an upgrade moves them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.localstack_python import run_seam_checks

CHECKS = textwrap.dedent(
    """
    import inspect
    from localstack.services.lambda_.invocation.execution_environment import ExecutionEnvironment
    from localstack.services.lambda_.invocation.runtime_executor import EXECUTOR_PLUGIN_MANAGER
    from localstack.utils.patch import Patch

    from localcloud_ext import lambda_logs, patches
    from localcloud_ext.executor import ProcessRuntimeExecutor

    # the executor implements every abstract method and is registered under its name
    missing = ProcessRuntimeExecutor.__abstractmethods__
    assert not missing, missing
    assert EXECUTOR_PLUGIN_MANAGER.load("process").load() is ProcessRuntimeExecutor

    # logs are shipped to the stream LocalStack names the environment's
    source = inspect.getsource(ExecutionEnvironment.get_log_stream_name)
    assert "{date.today():%Y/%m/%d}/[{self.function_version.id.qualifier}]{self.id}" in source

    # every patch applies (each checks its seam's signature first)
    patches.tolerate_deleting_failed_functions()
    patches.wake_the_server_loop_on_shutdown()
    patches.answer_function_updates_once_done()
    patches.stop_per_invoke_lambda_metrics()
    lambda_logs.ship_lambda_logs_as_written()
    from localstack.services.lambda_.invocation import version_manager
    assert version_manager.record_cw_metric_invocation is patches._publish_nothing
    # idle environments' keepalive timers share one thread
    patches.share_execution_environment_timers()
    from localstack.services.lambda_.invocation import execution_environment
    from localcloud_ext.timers import SharedTimer
    assert execution_environment.Timer is SharedTimer
    # SnapStart: LocalStack stores it as AWS does (On for published versions only), read here
    from localstack.services.lambda_.invocation.lambda_models import VersionFunctionConfiguration
    assert "snap_start" in VersionFunctionConfiguration.__dataclass_fields__
    # the scaling SQS poller: what it relies on, and its factory patch
    from localcloud_ext import seams
    seams.check_seams()
    seams.scale_sqs_event_source_mappings()
    patched = {p.name for p in Patch.applied_patches}
    expected = {"stop_version", "shutdown", "update_version", "get_esm_worker", "store_logs"}
    assert expected <= patched, patched
    print("seams ok")
    """
)


def test_localstack_seams_are_where_the_extension_expects_them(tmp_path: Path) -> None:
    run_seam_checks(CHECKS, tmp_path)
