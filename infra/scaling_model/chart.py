"""The model's run as a PNG in the burst report's style (burst.chart's step series, sizes and
labels): tasks reaching the queue, its depth, batches running against MaximumConcurrency (and a
measured run's, when compared), tasks finished; per second."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from burst.chart import finish_chart, step_series
from scaling_model.simulation import SimulationResult


def timeline(
    result: SimulationResult, measured: Sequence[int] | None = None
) -> list[dict[str, int]]:
    """The run per second, as a burst report's timeline holds it."""
    entries = []
    for second, running in enumerate(result.concurrency_per_second):
        entry = {
            "second": second,
            "arrivals": result.arrivals_per_second[second],
            "queue_visible": result.queue_per_second[second],
            "concurrent_batches": running,
            "completions": result.completions_per_second[second],
        }
        if measured is not None and second < len(measured):
            entry["measured_batches"] = measured[second]
        entries.append(entry)
    return entries


def write_chart(
    result: SimulationResult,
    path: Path,
    title: str,
    measured: Sequence[int] | None = None,
) -> Path:
    entries = timeline(result, measured)
    seconds = [e["second"] for e in entries]
    figure, (arrived, queue, running, finished) = plt.subplots(
        4, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [2, 2, 3, 2]}
    )
    drained = f"drained in {result.drain_seconds:,.0f} s" if result.drained else "not drained"
    figure.suptitle(
        f"{title}\n{result.tasks:,} tasks, {drained}, peak {result.peak_concurrency:,} batches "
        f"at once, peak {result.peak_database_connections} database connections",
        fontsize=11,
    )
    arrived.bar(seconds, [e["arrivals"] for e in entries], width=0.9, align="edge")
    arrived.set_ylabel("tasks queued / s")
    x, y = step_series(entries, "queue_visible")
    queue.step(x, y, where="post", color="C1", label="visible (waiting)")
    queue.set_ylabel("messages in queue")
    queue.legend(loc="upper right", fontsize=8)
    x, y = step_series(entries, "concurrent_batches")
    running.step(x, y, where="post", color="C3", linewidth=2, label="worker batches (model)")
    if measured is not None:
        x, y = step_series(entries, "measured_batches")
        running.step(x, y, where="post", color="C4", alpha=0.8, label="worker batches (measured)")
    limit = result.stage.max_concurrency
    running.axhline(limit, linestyle="--", color="grey", label=f"MaximumConcurrency ({limit})")
    running.set_ylim(0, max(limit, result.peak_concurrency) * 1.15 + 0.5)
    running.set_ylabel("batches at once")
    running.legend(loc="upper right", fontsize=8)
    return finish_chart(figure, (arrived, queue, running, finished), entries, path)
