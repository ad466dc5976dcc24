"""The scaling model: calibrated on a recorded burst it agrees with it and with a bigger one, and
it keeps AWS's rules (the ramp, MaximumConcurrency, the account's limit, retries, the proxy)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from burst.settings import BurstSettings
from localcloud_ext.scaling_policy import AWS_INITIAL_CONCURRENCY
from scaling_model import calibration, comparison, simulation, workload
from scaling_model.calibration import Calibration
from scaling_model.stage import StageSettings, read_stage, stage_of_function

DATA = Path(__file__).resolve().parents[1] / "data"
# A real run (scripts/demo's preset: 600 sleep tasks of 300 ms, MaximumConcurrency 10), its
# per-task rows and files left out, and a spike of 4,000 tasks of 1 s at MaximumConcurrency 100.
SMALL = DATA / "burst-report-small.json"
SPIKE = DATA / "burst-report-spike-4000.json"
# Quick batches, no startup: the rules' tests look at the rules, not at the laptop's timings.
PLAIN = Calibration(
    batch_overhead_seconds=0.0,
    task_overhead_seconds=0.01,
    cold_start_seconds=0.0,
    startup_seconds=0.0,
    api_latency_seconds=0.05,
    source="test",
)


def report(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def spike(count: int, task_type: str = "sleep", **options: float) -> workload.Workload:
    return workload.from_burst(
        BurstSettings(
            profile="spike", count=count, task_type=task_type, payload_options=options, batch=100
        )
    )


@pytest.fixture
def fullscale() -> StageSettings:
    return read_stage("fullscale")


# --- calibrated -------------------------------------------------------------------------------


def test_calibrated_on_a_recorded_burst_the_model_agrees_with_it() -> None:
    # GIVEN the timings fitted to a recorded run
    measured = report(SMALL)
    fitted = calibration.fit(measured)
    # WHEN the model is fed what that run put in its queue
    result = comparison.compare(measured, read_stage("local"), fitted)
    # THEN drain within 15 %, peak within 10 %, time to peak, and the 10-s curve agree
    assert result.checks == {"drain": True, "peak": True, "time_to_peak": True, "curve": True}
    assert result.model_drain == pytest.approx(measured["drain"]["seconds"], rel=0.15)


def test_the_same_timings_predict_a_bigger_burst_they_were_not_fitted_to() -> None:
    fitted = calibration.fit(report(SMALL))
    bigger = report(SPIKE)

    result = comparison.compare(bigger, read_stage("local"), fitted)

    assert result.agrees, "\n".join(result.lines())
    assert result.measured_peak == result.model_peak == 100


def test_the_stored_calibration_is_the_fit_of_the_committed_report() -> None:
    # as stored: rounded to the microsecond
    assert calibration.load() == Calibration(**calibration.fit(report(SMALL)).to_json())


def test_a_model_with_other_timings_disagrees_with_the_measured_run() -> None:
    measured = report(SMALL)
    slow = replace(calibration.fit(measured), task_overhead_seconds=0.3)

    result = comparison.compare(measured, read_stage("local"), slow)

    assert not result.checks["drain"]


def test_the_fit_reads_the_batches_overheads_from_the_report() -> None:
    fitted = calibration.fit(report(SMALL))
    # 60 batches of 10 tasks of 300 ms in 196 task-span seconds: ~28 ms a task beyond its sleep
    assert fitted.task_overhead_seconds == pytest.approx(0.0283, abs=0.001)
    assert fitted.startup_seconds == 3.0  # 7 batches at once 3 s after the queue's first task
    assert fitted.api_latency_seconds == pytest.approx(0.0783)


def test_a_report_without_batches_cannot_be_fitted() -> None:
    empty = {**report(SMALL), "batches": {"count": 0, "max_concurrency": 10}}
    with pytest.raises(calibration.CalibrationError, match="no batches"):
        calibration.fit(empty)


# --- AWS's rules --------------------------------------------------------------------------------


def test_the_mapping_starts_with_5_batches_and_adds_300_a_minute(
    fullscale: StageSettings,
) -> None:
    # 50 s batches: the backlog outlasts the climb
    result = simulation.simulate(fullscale, PLAIN, spike(30_000, "sleep", sleep_ms=5000))

    at = result.concurrency_per_second
    assert AWS_INITIAL_CONCURRENCY <= at[0] <= AWS_INITIAL_CONCURRENCY + 5  # 5 at once, then +5/s
    assert at[60] == pytest.approx(AWS_INITIAL_CONCURRENCY + 300, abs=6)
    assert result.peak_concurrency == 1000
    assert result.peak_at_seconds == pytest.approx((1000 - 5) / 5, abs=3)


def test_maximum_concurrency_caps_the_batches(fullscale: StageSettings) -> None:
    result = simulation.simulate(
        fullscale.with_limits(max_concurrency=20), PLAIN, spike(5_000, "sleep", sleep_ms=500)
    )
    assert result.peak_concurrency == 20
    assert result.drained and result.counters.done == 5_000


def test_the_account_limit_throttles_the_worker_and_the_api(fullscale: StageSettings) -> None:
    stage = fullscale.with_limits(account_concurrency=50)
    result = simulation.simulate(stage, PLAIN, spike(20_000, "sleep", sleep_ms=1000))
    assert result.peak_concurrency <= 50
    assert result.counters.throttles > 0
    assert result.drained


def test_reserved_concurrency_for_the_api_caps_the_worker(fullscale: StageSettings) -> None:
    stage = fullscale.with_limits(api_reserved_concurrency=400)
    result = simulation.simulate(stage, PLAIN, spike(60_000, "sleep", sleep_ms=5000))
    assert result.peak_concurrency == 600
    assert result.counters.api_throttles == 0


def test_an_api_with_little_reserved_is_throttled_and_its_requests_sent_again(
    fullscale: StageSettings,
) -> None:
    work = spike(50_000, "echo")  # 500 requests at once; 10 functions take 200 a second
    result = simulation.simulate(fullscale.with_limits(api_reserved_concurrency=10), PLAIN, work)
    assert 0 < result.counters.api_throttles <= work.requests  # each counted once
    assert result.counters.api_requests == work.requests
    assert result.drained and result.counters.done == 50_000


def test_failing_tasks_are_retried_then_dead_lettered(fullscale: StageSettings) -> None:
    result = simulation.simulate(fullscale, PLAIN, spike(200, "fail"))
    assert result.counters.dead_lettered == 200
    assert result.counters.attempts_failed == 200 * fullscale.max_receives
    assert result.counters.done == 0 and result.drained


def test_a_batch_longer_than_the_timeout_fails_and_comes_back(fullscale: StageSettings) -> None:
    short = replace(fullscale, worker_timeout_seconds=3.0, visibility_timeout_seconds=18.0)
    result = simulation.simulate(short, PLAIN, spike(20, "sleep", sleep_ms=500))
    assert result.counters.timeouts > 0
    assert result.counters.dead_lettered == 20


def test_the_proxy_holds_at_most_its_server_connections(fullscale: StageSettings) -> None:
    result = simulation.simulate(fullscale, PLAIN, spike(200_000, "echo"))
    assert result.peak_database_connections == fullscale.proxy_max_connections
    assert result.counters.borrow_timeouts == 0


def test_without_the_proxy_environments_past_max_connections_are_refused(
    fullscale: StageSettings,
) -> None:
    stage = fullscale.with_limits(database_proxy=False)
    result = simulation.simulate(stage, PLAIN, spike(30_000, "sleep", sleep_ms=2000))
    assert result.counters.database_refusals > 0
    assert result.peak_database_connections <= stage.database_client_slots
    assert result.drained  # handed back with backoff, not lost


def test_the_api_gateway_rate_spreads_a_huge_spike(fullscale: StageSettings) -> None:
    work = spike(3_000_000, "echo")  # 30,000 requests of 100: 3 s at 10,000 a second
    result = simulation.simulate(fullscale, PLAIN, work, limit_seconds=5.0)
    queued = result.arrivals_per_second
    assert sum(queued[:3]) == pytest.approx(3_000_000, rel=0.05)
    assert max(queued) <= simulation.API_GATEWAY_REQUESTS_PER_SECOND * 100
    assert result.counters.gateway_throttles == 30_000 - 1_000  # all but the first 0.1 s's


# --- inputs ---------------------------------------------------------------------------------


def test_the_workload_is_the_burst_tools_schedule() -> None:
    settings = BurstSettings(
        profile="steady", count=600, rate=120, duration=5, task_type="sleep",
        payload_options={"sleep_ms": 300}, batch=50,
    )  # fmt: skip
    work = workload.from_burst(settings)
    assert work.tasks == 600
    assert work.requests == 12  # 50 a request, as the burst tool sends them
    assert work.task_seconds == pytest.approx(0.3)
    assert work.arrivals[-1][0] < 5.0
    odd = workload.from_burst(replace(settings, count=590, duration=5))
    assert (odd.tasks, odd.requests) == (590, 12)  # the last request holds 40


def test_the_mix_averages_its_types_work() -> None:
    mix = workload.task_seconds(BurstSettings(task_type="mix"))
    # 60 % echo (0 ms), 30 % sleep (200 ms), 10 % cpu (20,000 rounds at 1 us)
    assert mix == pytest.approx(0.3 * 0.2 + 0.1 * 0.02)


def test_the_stage_is_read_as_the_deploy_reads_it() -> None:
    stage = read_stage("fullscale")
    assert (stage.batch_size, stage.max_concurrency) == (10, 1000)
    assert stage.worker_timeout_seconds == 60
    assert stage.visibility_timeout_seconds == 360  # 6 x the worker's timeout
    assert (stage.proxy_max_connections, stage.database_max_connections) == (78, 112)
    assert stage_of_function("serverless-scaling-local-worker") == "local"
    with pytest.raises(ValueError):
        stage_of_function("someone-else-worker")
