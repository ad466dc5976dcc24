"""The burst's timeline as a PNG: tasks sent, queue depth, batches running (against the
trigger's MaximumConcurrency) and tasks finished, per second from the first send."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

OPTIONAL_LABELS = {
    "lambda_concurrent_executions": "Lambda ConcurrentExecutions (CloudWatch, max/s)",
    "esm_concurrent_batches": "mapping ConcurrentBatches (CloudWatch, max/s)",
}


def step_series(timeline: Sequence[Mapping[str, Any]], name: str) -> tuple[list[int], list[Any]]:
    """The seconds where `name` has a value, and the values, for a step plot: the last value
    is repeated at the end of its second so that second is drawn too."""
    points = [(e["second"], e[name]) for e in timeline if e.get(name) is not None]
    if points:
        points.append((points[-1][0] + 1, points[-1][1]))
    return [p[0] for p in points], [p[1] for p in points]


def write_chart(report: Mapping[str, Any], path: Path) -> Path:
    timeline = report["timeline"]
    seconds = [e["second"] for e in timeline]
    settings, batches = report["settings"], report["batches"]
    figure, (sent, queue, running, finished) = plt.subplots(
        4, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [2, 2, 3, 2]}
    )
    route = "POST /tasks" if settings["batch"] == 1 else f"POST /tasks/batch x {settings['batch']}"
    drain = report["drain"]
    drained = f"drained in {drain['seconds']:.1f} s" if drain["drained"] else "not drained"
    figure.suptitle(
        f"burst {report['run_id']}: {settings['profile']}, {report['sending']['planned_tasks']}"
        f" x {settings['task_type']}, {route}\n"
        f"accepted {report['tasks']['accepted']}, done {report['done']}, failed "
        f"{report['failed']}, {drained}, peak {batches['peak_concurrent']} batches at once",
        fontsize=11,
    )

    sent.bar(seconds, [e["arrivals"] for e in timeline], width=0.9, align="edge", label="sent")
    x, y = step_series(timeline, "planned")
    sent.step(x, y, where="post", linestyle="--", color="black", label="scheduled (target)")
    sent.set_ylabel("tasks / s")
    sent.legend(loc="upper right", fontsize=8)

    for name, label, color in (
        ("queue_visible", "visible (waiting)", "C1"),
        ("queue_in_flight", "in flight (being run)", "C2"),
    ):
        x, y = step_series(timeline, name)
        queue.step(x, y, where="post", label=label, color=color)
    queue.set_ylabel("messages in queue")
    queue.legend(loc="upper right", fontsize=8)

    x, y = step_series(timeline, "concurrent_batches")
    running.step(
        x,
        y,
        where="post",
        color="C3",
        linewidth=2,
        label="worker batches running (from the rows)",
    )
    for index, (name, label) in enumerate(OPTIONAL_LABELS.items()):
        x, y = step_series(timeline, name)
        if x:
            running.step(x, y, where="post", label=label, color=f"C{4 + index}", alpha=0.8)
    limit = batches.get("max_concurrency")
    top = max([e["concurrent_batches"] for e in timeline] + [1])
    if limit:
        running.axhline(limit, linestyle="--", color="grey", label=f"MaximumConcurrency ({limit})")
        top = max(top, limit)
    running.set_ylim(0, top * 1.15 + 0.5)
    running.set_ylabel("batches at once")
    running.legend(loc="upper right", fontsize=8)

    return finish_chart(figure, (sent, queue, running, finished), timeline, path)


def finish_chart(
    figure: Any, axes: Sequence[Any], timeline: Sequence[Mapping[str, Any]], path: Path
) -> Path:
    """The last panel's completions, the panels' grid and span, and the PNG at `path`: the burst
    report's chart and the model's share it."""
    seconds = [e["second"] for e in timeline]
    finished = axes[-1]
    finished.bar(seconds, [e["completions"] for e in timeline], width=0.9, align="edge", color="C2")
    finished.set_ylabel("tasks finished / s")
    finished.set_xlabel("seconds after the first send")
    for panel in axes:
        panel.grid(True, alpha=0.3)
        panel.set_xlim(0, max(seconds) + 1 if seconds else 1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
