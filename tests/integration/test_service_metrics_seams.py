"""The LocalStack internals the service metrics hook into are still what they were written
against. Runs in LocalStack's own interpreter; fails loudly when an upgrade moves them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.localstack_python import run_seam_checks

CHECKS = textwrap.dedent(
    """
    import inspect, os, tempfile
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.services.lambda_.invocation import version_manager
    from localstack.services.lambda_.invocation.counting_service import CountingService
    from localstack.services.sqs import provider as sqs_provider
    from localstack.services.sqs.models import FifoQueue, StandardQueue
    from localstack.utils.patch import Patch

    from localcloud_ext import service_metrics

    # Lambda: the lease that throttles is taken inside the version manager's invoke, the
    # execution environment's invoke runs inside it, and the result says whether it failed
    source = inspect.getsource(version_manager.LambdaVersionManager.invoke)
    assert "self.counting_service.get_invocation_lease(" in source
    assert "execution_env.invoke(invocation)" in source
    assert "TooManyRequestsException" in inspect.getsource(CountingService.get_invocation_lease)
    assert "is_error" in version_manager.InvocationResult.__dataclass_fields__
    service_metrics.count_lambda_invocations()

    # SQS: every count goes through the provider's dispatcher, created in the patched method,
    # and the publish worker only starts when metrics are not "disabled"
    source = inspect.getsource(sqs_provider.SqsProvider)
    compact = "".join(source.split())
    for call in ("dispatch_metric_message_sent(queue=queue,message_body_size=",
                 "dispatch_metric_message_deleted(queue)",
                 "dispatch_metric_message_deleted(queue,deleted=len(successful))"):
        assert "self._cloudwatch_dispatcher." + call in compact, call
    start = inspect.getsource(sqs_provider.SqsProvider._start_cloudwatch_metrics_reporting)
    assert "if not self.cloudwatch_disabled:" in start
    service_metrics.count_sqs_messages()
    sqs = sqs_provider.SqsProvider()
    assert isinstance(sqs._cloudwatch_dispatcher, service_metrics.CountingSqsDispatcher)
    assert sqs._cloudwatch_publish_worker is None and sqs.cloudwatch_disabled

    # the queue internals the depth/age sampler reads
    standard = StandardQueue("q", "us-east-1", "000000000000")
    fifo = FifoQueue("q.fifo", "us-east-1", "000000000000")
    assert standard.visible.queue == [] and standard.inflight == {}
    assert fifo.message_groups == {} and fifo.inflight == {}
    message = standard.put({"MessageId": "1", "Body": "x", "Attributes": {}})
    assert service_metrics._oldest_message_created(standard) == message.created
    assert standard.approximate_number_of_messages == 1
    assert standard.approximate_number_of_messages_not_visible == 0

    # CloudWatch: the default provider keeps its metrics in the database our sink writes to
    from localstack.services.cloudwatch.provider_v2 import CloudwatchProvider
    assert "self.cloudwatch_database = CloudwatchDatabase()" in inspect.getsource(
        CloudwatchProvider.__init__)
    import sqlite3
    database = CloudwatchDatabase()
    with sqlite3.connect(database.METRICS_DB) as connection:
        aggregated = {"sample_count", "sum", "min", "max"}
        for table, extra in ((database.TABLE_SINGLE_METRICS, {"value"}),
                             (database.TABLE_AGGREGATED_METRICS, aggregated)):
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            expected = {"account_id", "region", "metric_name", "namespace", "timestamp",
                        "dimensions", "unit", "storage_resolution"} | extra
            assert expected <= columns, (table, columns)
    service_metrics.index_metrics_by_time()
    database = CloudwatchDatabase()
    with sqlite3.connect(database.METRICS_DB) as connection:
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(SINGLE_METRICS)")}
        indexes |= {row[1] for row in connection.execute("PRAGMA index_list(AGGREGATED_METRICS)")}
        # a thousand environments' PutMetricData: no fsync per commit (metrics_database)
        journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert set(service_metrics.TIME_INDEXES) <= indexes, indexes
    assert journal_mode == "wal", journal_mode
    service_metrics.match_metric_dimensions_exactly()
    assert database._get_ordered_dimensions_with_separator(
        [{"Name": "QueueName", "Value": "tasks"}], for_search=True) == "%QueueName=tasks\\t%"

    patched = {p.name for p in Patch.applied_patches}
    expected = {"invoke", "_init_cloudwatch_metrics_reporting",
                "_get_ordered_dimensions_with_separator", "__init__"}
    assert expected <= patched, patched
    print("seams ok")
    """
)


def test_service_metrics_seams_are_where_the_extension_expects_them(tmp_path: Path) -> None:
    run_seam_checks(CHECKS, tmp_path)
