"""The model against a measured burst: the same arrivals at the queue, the same limits, and the
figures side by side, each with its tolerance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaling_model import calibration as calibration_module
from scaling_model import simulation, workload
from scaling_model.calibration import Calibration
from scaling_model.simulation import SimulationResult
from scaling_model.stage import StageSettings

# What "agrees" means: the drain time within 15 %, the peak within 10 %, the time to the peak
# within 15 % (or 5 s, for bursts that peak within seconds), and the 10-s concurrency curve's
# mean absolute difference within 15 % of the measured peak.
DRAIN_TOLERANCE = 0.15
PEAK_TOLERANCE = 0.10
TIME_TO_PEAK_TOLERANCE = 0.15
TIME_TO_PEAK_SLACK_SECONDS = 5.0
CURVE_TOLERANCE = 0.15
CURVE_STEP_SECONDS = 10


def measured_per_second(report: Mapping[str, Any]) -> list[int]:
    """The report's batches at once per second: whole invocations where it has them."""
    series = calibration_module.batch_series(report)
    timeline: Sequence[Mapping[str, Any]] = report["timeline"]
    return [int(entry.get(series) or 0) for entry in timeline]


def every(values: Sequence[int], step: int = CURVE_STEP_SECONDS) -> list[int]:
    """The most in each `step` seconds."""
    return [max(values[s : s + step]) for s in range(0, len(values), step)]


def curve_error(measured: Sequence[int], modelled: Sequence[int]) -> float:
    """Mean absolute difference of the two 10-s curves (the shorter padded with zeros), over the
    measured peak."""
    a, b = every(measured), every(modelled)
    length = max(len(a), len(b))
    a, b = [*a, *[0] * (length - len(a))], [*b, *[0] * (length - len(b))]
    peak = max(a, default=0) or 1
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / length / peak


def _within(model: float, measured: float, tolerance: float, slack: float = 0.0) -> bool:
    return abs(model - measured) <= max(tolerance * abs(measured), slack)


@dataclass(frozen=True)
class Comparison:
    run_id: str
    tasks: int
    measured_drain: float
    model_drain: float | None
    measured_peak: int
    model_peak: int
    measured_time_to_peak: float
    model_time_to_peak: float | None
    curve_error: float
    measured_curve: list[int]
    model_curve: list[int]

    @property
    def checks(self) -> dict[str, bool]:
        return {
            "drain": self.model_drain is not None
            and _within(self.model_drain, self.measured_drain, DRAIN_TOLERANCE),
            "peak": _within(self.model_peak, self.measured_peak, PEAK_TOLERANCE),
            "time_to_peak": self.model_time_to_peak is not None
            and _within(
                self.model_time_to_peak,
                self.measured_time_to_peak,
                TIME_TO_PEAK_TOLERANCE,
                TIME_TO_PEAK_SLACK_SECONDS,
            ),
            "curve": self.curve_error <= CURVE_TOLERANCE,
        }

    @property
    def agrees(self) -> bool:
        return all(self.checks.values())

    def lines(self) -> list[str]:
        def pct(model: float | None, measured: float) -> str:
            if model is None:
                return "did not drain"
            return f"{100 * (model - measured) / measured:+.0f} %" if measured else "-"

        ok = {name: "ok" if passed else "OUT" for name, passed in self.checks.items()}
        drain = f"{self.model_drain:.1f}" if self.model_drain is not None else "-"
        to_peak = f"{self.model_time_to_peak:.0f}" if self.model_time_to_peak is not None else "-"
        return [
            f"run {self.run_id}: {self.tasks:,} tasks, measured vs model",
            f"  drain         {self.measured_drain:8.1f} s  {drain:>8} s  "
            f"{pct(self.model_drain, self.measured_drain)}  (within 15 %: {ok['drain']})",
            f"  peak          {self.measured_peak:8d}    {self.model_peak:8d}    "
            f"{pct(self.model_peak, self.measured_peak)}  (within 10 %: {ok['peak']})",
            f"  time to peak  {self.measured_time_to_peak:8.0f} s  {to_peak:>8} s  "
            f"{pct(self.model_time_to_peak, self.measured_time_to_peak)}  "
            f"(within 15 % or 5 s: {ok['time_to_peak']})",
            f"  10-s curve    mean |difference| {100 * self.curve_error:.1f} % of the peak "
            f"(within 15 %: {ok['curve']})",
            f"  measured      {self.measured_curve}",
            f"  model         {self.model_curve}",
        ]


def run_like(
    report: Mapping[str, Any], stage: StageSettings, calibration: Calibration
) -> SimulationResult:
    """The model fed what the measured burst put in its queue, under its MaximumConcurrency."""
    limit = report["batches"].get("max_concurrency")
    return simulation.simulate(
        stage.with_limits(max_concurrency=int(limit) if limit else None),
        calibration,
        workload.from_report(report),
    )


def compare(
    report: Mapping[str, Any], stage: StageSettings, calibration: Calibration
) -> Comparison:
    result = run_like(report, stage, calibration)
    measured = measured_per_second(report)
    peak = max(measured, default=0)
    return Comparison(
        run_id=str(report["run_id"]),
        tasks=int(report["tasks"]["accepted"]),
        measured_drain=float(report["drain"]["seconds"]),
        model_drain=result.drain_seconds,
        measured_peak=peak,
        model_peak=result.peak_concurrency,
        measured_time_to_peak=float(measured.index(peak)),
        model_time_to_peak=result.peak_at_seconds,
        curve_error=curve_error(measured, result.concurrency_per_second),
        measured_curve=every(measured),
        model_curve=every(result.concurrency_per_second),
    )
