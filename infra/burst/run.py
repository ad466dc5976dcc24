"""One burst end to end: check the settings, send on schedule while sampling the queue, wait for
the drain, read the rows, write the report and the chart."""

from __future__ import annotations

import logging
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import requests

from burst import cloud, schedule
from burst.chart import write_chart
from burst.cloud import NOT_DEPLOYED_FIX, QueueSampler, Target
from burst.errors import BurstError
from burst.progress import ProgressBar
from burst.report import Observations, accepted_tasks, build_report, write_json
from burst.sender import Clock, HttpSender, SendLog, SystemClock, send_on_schedule
from burst.settings import BurstSettings, check, check_loopback
from deployment import dashboard_site

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 30.0  # a cold API function starts within this


@dataclass(frozen=True)
class BurstResult:
    report: dict[str, Any]
    json_path: Path
    chart_path: Path
    dashboard_link: str | None = None  # the run's view in the dashboard, once uploaded

    @property
    def integrity_ok(self) -> bool:
        return bool(self.report["integrity"]["ok"])

    @property
    def files(self) -> dict[str, Path]:
        return {"report": self.json_path, "chart": self.chart_path}


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: the UTC time and 4 random hex digits (20261127-081500-a1b2).
    Only letters, digits and '-': the run's idempotency keys are matched by prefix."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_api_answers(api_url: str) -> None:
    """GET /health before sending, so a stopped local cloud is a message, not 500 failed POSTs."""
    try:
        response = requests.get(f"{api_url}health", timeout=HEALTH_TIMEOUT_SECONDS)
    except requests.RequestException as e:
        raise BurstError(
            f"the API at {api_url} does not answer ({type(e).__name__}): is the local cloud up? "
            f"scripts/localcloud status; {NOT_DEPLOYED_FIX}"
        ) from e
    if response.status_code != 200:
        raise BurstError(
            f"GET {api_url}health answered {response.status_code} {response.text[:200]}: "
            f"the app cannot take tasks; scripts/localcloud status; {NOT_DEPLOYED_FIX}"
        )


def run_burst(
    target: Target,
    settings: BurstSettings,
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
    run_id: str | None = None,
) -> BurstResult:
    """Send the burst at `target`, follow it into the database, write the report and chart."""
    check(settings)
    check_loopback(target.api_url)
    clock = clock or SystemClock()
    out = out or sys.stdout
    run_id = run_id or new_run_id()
    key_prefix = schedule.run_key_prefix(run_id)
    planned = schedule.plan(settings, run_id)
    planned_tasks = sum(len(r.tasks) for r in planned)
    check_api_answers(target.api_url)

    sqs = target.client("sqs")
    queue_at_start = cloud.queue_depth(sqs, target.task_queue_url)
    lambda_client = target.client("lambda")
    max_concurrency = cloud.maximum_concurrency(lambda_client, target.event_source_mapping)
    worker_shape = cloud.function_shape(lambda_client, target.worker_function)
    api_shape = cloud.function_shape(lambda_client, target.api_function)
    route = "tasks" if settings.batch == 1 else f"tasks/batch ({settings.batch} per request)"
    print(
        f"Burst {run_id}: {planned_tasks} {settings.task_type} tasks, {settings.profile}"
        f" ({_profile_words(settings)}), {len(planned)} x POST {target.api_url}{route}",
        file=out,
        flush=True,
    )

    sampler_sqs = target.client("sqs")  # its own client: the sampler runs on its own thread
    sampler = QueueSampler(lambda: cloud.queue_depth(sampler_sqs, target.task_queue_url), clock)
    sending_bar = ProgressBar("sending", planned_tasks, enabled=settings.progress)
    sender = HttpSender(target.api_url, api_key=target.api_key)

    def sent_so_far(log: SendLog) -> None:
        late = max((s.lateness for s in log.sent), default=0.0)
        sending_bar.update(log.tasks_sent, f"tasks, {late:.2f} s max lateness")

    clock_at_start, wall_at_start = clock.now(), datetime.now(UTC)
    sampler.start()
    try:
        log = send_on_schedule(
            planned, sender, settings.threads, settings.max_seconds, clock, sent_so_far
        )
        sending_bar.finish(log.tasks_sent, f"tasks sent, {log.tasks_not_sent} not sent")
        accepted = accepted_tasks(log.sent)
        ids = [task_id for _, task_id in accepted]
        draining_bar = ProgressBar("draining", len(ids), enabled=settings.progress)

        def drained_so_far(counts: dict[str, int]) -> None:
            final = counts.get("done", 0) + counts.get("failed", 0)
            draining_bar.update(final, f"final; {dict(sorted(counts.items()))}")

        drain_started = clock.now()
        with cloud.database(target) as connection:
            counts, drained = cloud.wait_for_drain(
                connection, ids, settings.drain_seconds, clock, drained_so_far
            )
            draining_bar.finish(counts.get("done", 0) + counts.get("failed", 0), "final")
            drain_waited = clock.now() - drain_started
            rows = cloud.run_rows(connection, ids, key_prefix)
    finally:
        sampler.stop()
        sender.close()
    dead_letters = cloud.dead_letter_count(sqs, target.dead_letter_queue_url)

    first_send = min((s.sent_at for s in log.sent), default=0.0)
    origin_clock = log.started + first_send
    origin = wall_at_start + timedelta(seconds=origin_clock - clock_at_start)
    metrics = cloud.cloudwatch_series(
        target.client("cloudwatch"),
        target,
        origin - timedelta(seconds=1),
        datetime.now(UTC) + timedelta(seconds=1),
    )
    report = build_report(
        Observations(
            run_id=run_id,
            settings=settings,
            target=target.to_json(),
            key_prefix=key_prefix,
            planned=planned,
            log=log,
            origin=origin,
            origin_clock=origin_clock,
            accepted=accepted,
            rows=rows,
            drain_statuses=counts,
            drained=drained,
            drain_waited_seconds=drain_waited,
            queue_samples=sampler.samples,
            queue_at_start=queue_at_start,
            dead_letters=dead_letters,
            max_concurrency=max_concurrency,
            cloudwatch=metrics,
            worker_shape=worker_shape,
            api_shape=api_shape,
        )
    )
    json_path = settings.out_dir / f"burst-{run_id}.json"
    chart_path = settings.out_dir / f"burst-{run_id}.png"
    report["files"] = {"report": str(json_path), "chart": str(chart_path)}
    write_json(report, json_path)
    write_chart(report, chart_path)
    return BurstResult(report, json_path, chart_path, publish_to_dashboard(target, report))


def publish_to_dashboard(target: Target, report: dict[str, Any]) -> str | None:
    """The report beside the dashboard's site, so that the run can be opened as a link; a
    failed upload is a warning (the report is on disk), never a failed burst."""
    if target.dashboard_bucket is None or target.dashboard_url is None:
        return None
    try:
        dashboard_site.publish_report(target.client("s3"), target.dashboard_bucket, report)
    except dashboard_site.SiteError as e:
        logger.warning("the report was not uploaded to the dashboard: %s", e)
        return None
    return dashboard_site.report_link(target.dashboard_url, report["run_id"])


def _profile_words(settings: BurstSettings) -> str:
    if settings.profile == "spike":
        return "all due at once"
    if settings.profile == "ramp":
        return f"0 -> {settings.rate:g} tasks/s over {settings.duration:g} s"
    return f"{settings.rate:g} tasks/s for {settings.duration:g} s"
