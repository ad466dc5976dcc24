"""Per-batch timings fitted to a burst report (`burst-<run id>.json`), and stored beside the model.

A report holds, per second, the most worker batches running at once (`concurrent_batches`, the
span of each batch's tasks in the rows) and, where CloudWatch answered, the mapping's whole
invocations (`esm_concurrent_batches`); in all, how many batches ran and how many tasks ended.
From them:

* batch-seconds = the per-second counts summed (a second's most-at-once stands for the second);
* a batch's task span = batch-seconds / batches; per task, less the task's own work (its type's
  estimate), that is `task_overhead_seconds` (claiming the row, writing the result, the poll);
* a whole invocation less its task span is `batch_overhead_seconds` (the invoke, the delete);
  0 when the report has no CloudWatch series;
* while the curve climbs, how far the task spans lag the invocations (in batches, over the
  climb's batches per second), less that overhead, is `cold_start_seconds`: what a new
  environment adds to its first batch; 0 without CloudWatch series;
* from the first task in the queue to the mapping running its initial batches (min(5,
  MaximumConcurrency)) is `startup_seconds`: the local poller's pickup and its first
  environments' start while the API still takes the burst;
* the API's median latency holds an API function per request for that long.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from localcloud_ext.scaling_policy import AWS_INITIAL_CONCURRENCY
from scaling_model import workload

DEFAULT_PATH = Path(__file__).with_name("calibration.json")
INVOCATIONS_SERIES = "esm_concurrent_batches"
TASK_SPANS_SERIES = "concurrent_batches"


class CalibrationError(ValueError):
    """The report cannot be fitted; the message says what it lacks."""


@dataclass(frozen=True)
class Calibration:
    """Seconds a batch takes beyond its tasks' own work: duration = batch_overhead +
    tasks x (task_overhead + task's work), plus cold_start on a new environment; the mapping
    runs nothing until startup after the first message."""

    batch_overhead_seconds: float
    task_overhead_seconds: float
    cold_start_seconds: float
    startup_seconds: float
    api_latency_seconds: float
    source: str  # the report's run id, or "default"

    def batch_seconds(self, tasks: int, task_seconds: float) -> float:
        return self.batch_overhead_seconds + tasks * (self.task_overhead_seconds + task_seconds)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def batch_series(report: Mapping[str, Any]) -> str:
    """The timeline's series of whole invocations when the report has it, else task spans."""
    timeline: Sequence[Mapping[str, Any]] = report["timeline"]
    if any(entry.get(INVOCATIONS_SERIES) for entry in timeline):
        return INVOCATIONS_SERIES
    return TASK_SPANS_SERIES


def _first_second(timeline: Sequence[Mapping[str, Any]], key: str, above: float = 0) -> int | None:
    return next((e["second"] for e in timeline if (e.get(key) or 0) > above), None)


def _queued(entry: Mapping[str, Any]) -> int:
    return int(entry.get("queue_visible") or 0) + int(entry.get("queue_in_flight") or 0)


def fit(report: Mapping[str, Any]) -> Calibration:
    timeline: Sequence[Mapping[str, Any]] = report["timeline"]
    batches = int(report["batches"]["count"])
    ended = int(report["done"]) + int(report["failed"])
    if batches == 0 or ended == 0:
        raise CalibrationError(f"report {report['run_id']} ran no batches: nothing to fit")
    tasks_per_batch = ended / batches
    span_seconds = sum(e[TASK_SPANS_SERIES] for e in timeline) / batches
    own_work = workload.task_seconds(workload.burst_settings_of(report))
    task_overhead = max(0.0, span_seconds / tasks_per_batch - own_work)
    series = batch_series(report)
    batch_overhead = cold_start = 0.0
    if series == INVOCATIONS_SERIES:
        invocation_seconds = sum(e.get(INVOCATIONS_SERIES) or 0 for e in timeline) / batches
        batch_overhead = max(0.0, invocation_seconds - span_seconds)
        cold_start = max(0.0, climb_lag(timeline) - batch_overhead)
    initial = min(AWS_INITIAL_CONCURRENCY, int(report["batches"]["max_concurrency"] or 1000))
    first_queued = next((e["second"] for e in timeline if _queued(e) > 0), None)
    started = _first_second(timeline, series, above=initial - 1)
    if first_queued is None or started is None:
        raise CalibrationError(f"report {report['run_id']}: no task queued or no batch seen")
    latency = report.get("api_latency_ms") or {}
    return Calibration(
        batch_overhead_seconds=batch_overhead,
        task_overhead_seconds=task_overhead,
        cold_start_seconds=cold_start,
        startup_seconds=float(max(0, started - first_queued)),
        api_latency_seconds=float(latency.get("p50", 0.0)) / 1000,
        source=str(report["run_id"]),
    )


def climb_lag(timeline: Sequence[Mapping[str, Any]]) -> float:
    """Seconds the task spans trail the invocations while the curve climbs: the batches
    between them over the batches added per second (0 when it does not climb)."""
    rising = [
        (e[INVOCATIONS_SERIES] - e[TASK_SPANS_SERIES], e[INVOCATIONS_SERIES] - prev)
        for prev_entry, e in zip(timeline, timeline[1:], strict=False)
        if (prev := prev_entry.get(INVOCATIONS_SERIES)) is not None
        and e.get(INVOCATIONS_SERIES) is not None
        and e[INVOCATIONS_SERIES] > prev
    ]
    added = sum(step for _, step in rising)
    return sum(max(0.0, gap) for gap, _ in rising) / added if added else 0.0


def save(calibration: Calibration, path: Path = DEFAULT_PATH) -> Path:
    path.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
    return path


def load(path: Path = DEFAULT_PATH) -> Calibration:
    if not path.exists():
        raise CalibrationError(f"{path} is missing: run scripts/simulate calibrate REPORT.json")
    values = json.loads(path.read_text())
    return Calibration(**values)


def read_report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    for key in ("run_id", "settings", "timeline", "batches", "drain"):
        if key not in report:
            raise CalibrationError(f"{path} is not a burst report: it has no {key!r}")
    return report
