"""A burst's report: everything observed, turned into figures (JSON-ready), the terminal
summary, and where to look next. build_report is a pure function of the observations."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from burst.analysis import (
    TaskRow,
    TimelineInputs,
    batch_intervals,
    build_timeline,
    check_integrity,
    peak_overlap,
    percentiles,
    seconds_after,
)
from burst.schedule import PlannedRequest
from burst.sender import LATE_SECONDS, TRANSPORT, SendLog, Sent
from burst.settings import BurstSettings
from scaling_model.costs import FunctionShape, report_cost

REPORT_VERSION = 1
# Lateness above this at p95 means the sender pool, not the system, set the pace.
CLIENT_LIMITED_P95_SECONDS = 0.1


@dataclass
class Observations:
    """What one burst saw. Clock readings (`*_clock`, queue samples, the send log's `started`)
    are of the burst's monotonic clock; `origin` is the wall-clock time of the first send, and
    `origin_clock` the clock's reading then, which ties the two together."""

    run_id: str
    settings: BurstSettings
    target: Mapping[str, str]
    key_prefix: str
    planned: Sequence[PlannedRequest]
    log: SendLog
    origin: datetime
    origin_clock: float
    accepted: list[tuple[int, str]]  # (task number, id) per task an answer accepted
    rows: list[TaskRow]
    drain_statuses: dict[str, int]
    drained: bool
    drain_waited_seconds: float
    queue_samples: list[tuple[float, int, int]] = field(default_factory=list)
    queue_at_start: tuple[int, int] | None = None
    dead_letters: int | None = None
    max_concurrency: int | None = None
    cloudwatch: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    # The deployed functions' memory, architecture and SnapStart, for the run's cost on AWS.
    worker_shape: FunctionShape | None = None
    api_shape: FunctionShape | None = None


def accepted_tasks(sent: Iterable[Sent]) -> list[tuple[int, str]]:
    """(task number, id) of every task the answers accepted (a "duplicate" names an existing
    task, so it counts: its row is there)."""
    accepted = []
    for s in sent:
        for number, task_id in zip(s.request.task_numbers, s.answer.task_ids, strict=False):
            if task_id is not None:
                accepted.append((number, task_id))
    return accepted


def task_outcomes(
    sent: Iterable[Sent],
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Tasks by outcome: (not accepted, by status code and the API's word for it; transport
    errors, by exception)."""
    rejected: collections.Counter[str] = collections.Counter()
    transport: collections.Counter[str] = collections.Counter()
    for s in sent:
        answer, tasks = s.answer, len(s.request.tasks)
        if answer.status is None:
            transport[answer.error or "unknown"] += tasks
        elif not 200 <= answer.status < 300:
            rejected[str(answer.status)] += tasks
        elif answer.error is not None:
            rejected[f"{answer.status} {answer.error}"] += tasks
        else:
            for outcome in answer.outcomes:
                if outcome not in ("accepted", "duplicate"):
                    rejected[f"{answer.status} {outcome}"] += 1
    return rejected, transport


def _rounded(figures: Mapping[str, float] | None, scale: float, digits: int) -> Any:
    if figures is None:
        return None
    return {k: (v if k == "n" else round(v * scale, digits)) for k, v in figures.items()}


def sending_figures(obs: Observations) -> dict[str, Any]:
    sent = obs.log.sent
    first = min((s.sent_at for s in sent), default=0.0)
    last = max((s.sent_at for s in sent), default=0.0)
    lateness = [s.lateness for s in sent]
    late = sum(1 for x in lateness if x > LATE_SECONDS)
    lateness_figures = percentiles(lateness)
    spike = obs.settings.profile == "spike"
    client_limited = bool(
        lateness_figures and lateness_figures["p95"] > CLIENT_LIMITED_P95_SECONDS and not spike
    )
    tasks_sent = obs.log.tasks_sent
    return {
        "planned_tasks": sum(len(r.tasks) for r in obs.planned),
        "planned_requests": len(obs.planned),
        "sent_tasks": tasks_sent,
        "sent_requests": len(sent),
        "not_sent_tasks": obs.log.tasks_not_sent,
        "seconds": round(last - first, 3),
        "tasks_per_s": round(tasks_sent / (last - first), 1) if last > first else None,
        "schedule_seconds": round(max((r.due for r in obs.planned), default=0.0), 3),
        "lateness_s": _rounded(lateness_figures, 1, 4),
        "late_requests": late,
        "retries": retry_figures(sent),
        "late_threshold_s": LATE_SECONDS,
        # Spikes are due all at once: their lateness is the pool's pace, by design.
        "client_limited": client_limited,
    }


def retry_figures(sent: Sequence[Sent]) -> dict[str, Any]:
    """Requests answered 5xx or not at all, then sent again with the same idempotency keys:
    how many, what the earlier attempts got, and how many still failed after the last one."""
    retried = [s for s in sent if s.answer.retried]
    earlier = collections.Counter(status for s in retried for status in s.answer.retried)
    return {
        "requests_retried": len(retried),
        "extra_attempts": sum(len(s.answer.retried) for s in retried),
        "earlier_answers": dict(sorted(earlier.items())),
        "still_failing": sum(1 for s in sent if s.answer.retryable),
        # How many attempts each of those had: the client gave up only after its last retry.
        "still_failing_attempts": sorted({s.answer.attempts for s in sent if s.answer.retryable}),
    }


def _retried(retries: Mapping[str, Any]) -> str:
    if not retries["requests_retried"]:
        return ""
    return (
        f"; {retries['requests_retried']} retried with the same keys after "
        f"{_counts(retries['earlier_answers'])}, {retries['still_failing']} still failing"
    )


def build_report(obs: Observations) -> dict[str, Any]:
    """Every figure of the burst, JSON-ready: times are seconds after the first send."""
    sent = obs.log.sent
    first_send = min((s.sent_at for s in sent), default=0.0)
    requests_by_status = collections.Counter(
        str(s.answer.status) if s.answer.status is not None else TRANSPORT for s in sent
    )
    rejected, transport = task_outcomes(sent)
    api_latency = [s.latency for s in sent if s.answer.status and 200 <= s.answer.status < 300]

    accepted_ids = {task_id for _, task_id in obs.accepted}
    own_rows = [r for r in obs.rows if r.id in accepted_ids]
    by_status = collections.Counter(r.status for r in own_rows)
    end_to_end = [
        (r.finished_at - r.accepted_at).total_seconds()
        for r in own_rows
        if r.status == "done" and r.finished_at is not None
    ]
    finished = [r.finished_at for r in own_rows if r.final and r.finished_at is not None]
    last_final = max(finished, default=None)

    intervals = batch_intervals(own_rows)
    peak = peak_overlap(intervals.values())
    integrity = check_integrity(obs.accepted, obs.rows, obs.key_prefix)

    def since(moment: datetime) -> float:
        return seconds_after(obs.origin, moment)

    timeline = build_timeline(
        TimelineInputs(
            arrivals=[s.sent_at - first_send for s in sent for _ in range(len(s.request.tasks))],
            planned=[r.due - first_send for r in obs.planned for _ in range(len(r.tasks))],
            queue_samples=[
                (taken - obs.origin_clock, visible, in_flight)
                for taken, visible, in_flight in obs.queue_samples
            ],
            batches=[(since(start), since(end)) for start, end in intervals.values()],
            completions=[since(moment) for moment in finished],
            extra={
                name: [(since(moment), value) for moment, value in points]
                for name, points in obs.cloudwatch.items()
            },
        )
    )
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "run_id": obs.run_id,
        "idempotency_key_prefix": obs.key_prefix,
        "first_send_at": obs.origin.isoformat(),
        "settings": obs.settings.to_json(),
        "target": dict(obs.target),
        "sending": sending_figures(obs),
        "requests_by_status": dict(sorted(requests_by_status.items())),
        "tasks": {
            "accepted": len(accepted_ids),
            "rejected_by_status": dict(sorted(rejected.items())),
            "transport_errors": dict(sorted(transport.items())),
        },
        "api_latency_ms": _rounded(percentiles(api_latency), 1000, 1),
        "end_to_end_ms": _rounded(percentiles(end_to_end), 1000, 1),
        "drain": {
            "drained": obs.drained,
            "waited_seconds": round(obs.drain_waited_seconds, 1),
            # first send -> the last accepted task done or failed
            "seconds": round(since(last_final), 2) if obs.drained and last_final else None,
            "last_final_seconds": round(since(last_final), 2) if last_final else None,
            "statuses": dict(sorted(by_status.items())),
            "pending": len(accepted_ids) - by_status["done"] - by_status["failed"],
        },
        "done": by_status["done"],
        "failed": by_status["failed"],
        "batches": {
            "count": len(intervals),
            "peak_concurrent": peak.count,
            "peak_at_seconds": round(since(peak.at), 2) if peak.at else None,
            "max_concurrency": obs.max_concurrency,
        },
        "queue_at_start": (
            {"visible": obs.queue_at_start[0], "in_flight": obs.queue_at_start[1]}
            if obs.queue_at_start
            else None
        ),
        "dead_letter_messages": obs.dead_letters,
        "integrity": integrity.to_json(),
        "optional_series": sorted(obs.cloudwatch),
        # The rows only see each batch's task spans (tasks of a few ms rarely overlap); these
        # count whole invocations, as the local cloud publishes them.
        "cloudwatch_peaks": {
            name: {
                "peak": max(value for _, value in points),
                "at_seconds": round(
                    since(next(m for m, v in points if v == max(v for _, v in points))), 2
                ),
            }
            for name, points in sorted(obs.cloudwatch.items())
            if points
        },
        "timeline": timeline,
    }
    # What this run would cost on AWS (scaling_model.costs, the model's own bill); None when
    # the functions' configuration could not be read.
    report["cost"] = (
        report_cost(report, obs.worker_shape, obs.api_shape)
        if obs.worker_shape and obs.api_shape
        else None
    )
    return report


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


# --- the terminal summary ---------------------------------------------------------------------


def _ms(figures: Mapping[str, Any] | None) -> str:
    if not figures:
        return "n/a"
    return f"p50 {figures['p50']:.0f}  p95 {figures['p95']:.0f}  p99 {figures['p99']:.0f}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counts.items()) or "none"


def _ids(ids: Sequence[str], shown: int = 3) -> str:
    more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
    return f"{len(ids)}" + (f" [{', '.join(ids[:shown])}{more}]" if ids else "")


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The figures, one per line, labels aligned."""
    s, sending, tasks = report["settings"], report["sending"], report["tasks"]
    drain, batches, integrity = report["drain"], report["batches"], report["integrity"]
    lateness = sending["lateness_s"]
    if lateness is None:
        pace = "n/a"
    else:
        pace = (
            f"p95 {lateness['p95']:.3f} s, max {lateness['max']:.3f} s behind schedule; "
            f"{sending['late_requests']} of {sending['sent_requests']} requests late"
        )
        if s["profile"] == "spike":
            pace += " (a spike is due at once: this is the sender pool's pace)"
        elif sending["client_limited"]:
            pace += "  << the client was the limit: raise --threads or use --batch"
    rate = f"{sending['tasks_per_s']:.0f} tasks/s" if sending["tasks_per_s"] else "-"
    if drain["drained"]:
        drained = f"{drain['seconds']:.1f} s (first send -> last task final)"
    else:
        unfinished = {k: n for k, n in drain["statuses"].items() if k not in ("done", "failed")}
        drained = (
            f"NOT drained after waiting {drain['waited_seconds']:.0f} s: {drain['pending']} "
            f"still pending ({_counts(unfinished)})"
        )
    limit = batches["max_concurrency"]
    peak = f"{batches['peak_concurrent']}" + (f" of MaximumConcurrency {limit}" if limit else "")
    if batches["peak_at_seconds"] is not None:
        peak += f", reached {batches['peak_at_seconds']:.1f} s after the first send"
    queue_start = report["queue_at_start"]
    verdict = "OK" if integrity["ok"] else "FAILED"
    rows = [
        ("sent", f"{sending['sent_tasks']} of {sending['planned_tasks']} tasks in "
         f"{sending['sent_requests']} requests over {sending['seconds']:.1f} s ({rate})"),
        ("pace", pace),
        ("requests", _counts(report["requests_by_status"]) + _retried(sending["retries"])),
        ("accepted", f"{tasks['accepted']} tasks; not accepted: "
         f"{_counts(tasks['rejected_by_status'])}; transport errors: "
         f"{_counts(tasks['transport_errors'])}"),
        ("API ms", _ms(report["api_latency_ms"])),
        ("end-to-end ms", _ms(report["end_to_end_ms"]) + "  (accepted_at -> finished_at)"),
        ("drain", drained),
        ("outcome", f"done {report['done']}, failed {report['failed']}, dead-letter queue "
         f"{report['dead_letter_messages'] if report['dead_letter_messages'] is not None else '?'}"
         " message(s)"),
        ("batches", f"{batches['count']} worker batches; most at once (task spans in the rows): "
         f"{peak}"),
        ("integrity", f"{verdict}: {integrity['accepted']} accepted, {integrity['rows']} rows; "
         f"lost {_ids(integrity['lost'])}, duplicated {_ids(integrity['duplicated'])}, "
         f"unexpected {_ids(integrity['unexpected'])}"),
    ]  # fmt: skip
    if queue_start and (queue_start["visible"] or queue_start["in_flight"]):
        rows.append(
            (
                "note",
                f"the task queue already held {queue_start['visible']} visible + "
                f"{queue_start['in_flight']} in-flight messages when the burst began: "
                "the figures include draining them",
            )
        )
    if report["cloudwatch_peaks"]:
        peaks = ", ".join(
            f"{name} {figures['peak']:.0f} at {figures['at_seconds']:.1f} s"
            for name, figures in report["cloudwatch_peaks"].items()
        )
        rows.append(("CloudWatch", f"most at once (whole invocations): {peaks}"))
    cost = report.get("cost")
    if cost:
        rows.append(
            (
                "AWS cost",
                f"${cost['total_usd']:,.4f} for this run on AWS ({cost['region']}, list prices "
                f"of {cost['prices_date']}; {cost['note']})",
            )
        )
    width = max(len(label) for label, _ in rows)
    route = "POST /tasks" if s["batch"] == 1 else f"POST /tasks/batch ({s['batch']} per request)"
    header = (
        f"Burst {report['run_id']}: {s['profile']}, {sending['planned_tasks']} x {s['task_type']}"
        f" tasks, {route}, {s['threads']} sender threads"
    )
    return [header, *(f"  {label:<{width}}  {value}" for label, value in rows)]


def where_to_look(
    report: Mapping[str, Any], files: Mapping[str, Path], dashboard_link: str | None = None
) -> list[str]:
    target = report["target"]
    api, worker = target["api_url"], target["worker_function"]
    dashboard = (
        [f"  dashboard  {dashboard_link}  (this run; the live view is the same URL without #...)"]
        if dashboard_link
        else []
    )
    lines = [
        "Where to look next (awslocal is in .venv/bin: `source .venv/bin/activate`):",
        *dashboard,
        *(f"  {kind:<6} {path}" for kind, path in files.items()),
        f"  curl {api}status",
        f"  awslocal sqs get-queue-attributes --queue-url {target['task_queue_url']} "
        "--attribute-names All",
        f"  awslocal lambda get-event-source-mapping --uuid {target['event_source_mapping']}",
        f"  awslocal logs tail /aws/lambda/{worker} --since 10m",
        f"  awslocal cloudwatch list-metrics --namespace AWS/Lambda "
        f"--dimensions Name=FunctionName,Value={worker}",
        "  rows of this run: SELECT status, count(*) FROM tasks WHERE "
        f"starts_with(idempotency_key, '{report['idempotency_key_prefix']}') GROUP BY status",
    ]
    return lines
