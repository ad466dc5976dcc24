"""The API benchmark's arithmetic: bodies, answers, figures, ratios, /proc parsing, limits."""

from __future__ import annotations

import argparse
import json
import uuid

import pytest

from tests.benchmarks.api_tasks import (
    BATCH,
    BATCH_SIZE,
    NOOP,
    TASKS,
    BenchError,
    Outcome,
    Phase,
    accepted_from,
    add_arguments,
    combine,
    cpu_delta,
    descendants,
    figures,
    function_name,
    parse_stat,
    ratio,
    request_body,
    validate,
    verdict,
)

LOCAL_URL = "http://127.0.0.1:4566/_aws/execute-api/abc/api/"


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_single_task_is_an_echo_numbered_n() -> None:
    assert request_body(NOOP, 3) is None
    assert json.loads(request_body(TASKS, 3) or b"") == {"type": "echo", "payload": {"i": 3}}


def test_a_batch_holds_a_full_batch_of_distinctly_numbered_echo_tasks() -> None:
    tasks = json.loads(request_body(BATCH, 2) or b"")["tasks"]

    assert len(tasks) == BATCH_SIZE == 100
    assert {t["type"] for t in tasks} == {"echo"}
    assert [t["payload"]["i"] for t in tasks] == list(range(200, 300))


def test_accepted_ids_come_from_the_single_and_the_batch_answers() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    batch_answer = {
        "accepted": 1,
        "results": [
            {"id": a, "outcome": "accepted"},
            {"id": b, "outcome": "conflict"},
        ],
    }

    assert accepted_from(NOOP, {"function_name": "f"}) == ([], 0)
    assert accepted_from(TASKS, {"id": a, "status": "queued"}) == ([a], 0)
    assert accepted_from(BATCH, batch_answer) == ([a], 1)


def test_an_answer_without_ids_is_refused() -> None:
    with pytest.raises(KeyError):
        accepted_from(TASKS, {"message": "hello"})
    with pytest.raises(ValueError):
        accepted_from(TASKS, {"id": "not-a-uuid"})


def test_every_non_2xx_and_every_transport_error_counts_as_failed() -> None:
    phase = Phase(TASKS, "r1", threads=8, planned=5)

    phase.record(Outcome(202, 10.0, ["id-1"]))
    phase.record(Outcome(202, 30.0, ["id-2"]))
    phase.record(Outcome(503, 5.0, sample='{"Message": "busy"}'))
    phase.record(Outcome(None, 1.0, error="ConnectionError"))
    phase.record(Outcome(202, 2.0, error="unreadable 202"))

    assert (phase.sent, phase.ok, phase.failed) == (5, 2, 3)
    assert phase.statuses == {202: 3, 503: 1}
    assert phase.errors == {"ConnectionError": 1, "unreadable 202": 1}
    assert phase.samples == {"503": '{"Message": "busy"}'}
    assert phase.latencies_ms == [10.0, 30.0]  # of ok answers only
    assert phase.task_ids == ["id-1", "id-2"]


def test_figures_are_rates_over_the_phase_and_percentiles_of_ok_latencies() -> None:
    phase = Phase(TASKS, "r1", threads=8, planned=4, seconds=2.0)
    for ms in (10.0, 20.0, 30.0, 40.0):
        phase.record(Outcome(202, ms, [str(ms)]))
    phase.cpu_seconds = {"localstack": 1.0, "machine": 3.0}

    f = figures(phase)

    assert f["requests_per_s"] == 2.0 and f["tasks_per_s"] == 2.0
    assert f["latency_ms"] == {"p50": 25.0, "p95": 40.0, "p99": 40.0}
    assert f["cpu_percent"] == {"localstack": 50.0, "machine": 150.0, "other": 100.0}
    assert f["localstack_cpu_ms_per_request"] == 250.0
    assert f["route"] == "POST tasks" and f["failed"] == 0


def test_rounds_combine_over_their_total_time() -> None:
    one = Phase(NOOP, "r1", 8, 10, sent=10, ok=10, seconds=1.0, cpu_seconds={"client": 0.1})
    two = Phase(NOOP, "r2", 8, 10, sent=10, ok=10, seconds=3.0, cpu_seconds={"client": 0.3})
    one.api_environments, one.api_cold_starts = 7, 7
    two.api_environments, two.api_cold_starts = 8, 1

    both = combine([one, two], "all")

    assert (both.sent, both.ok, both.planned, both.seconds) == (20, 20, 20, 4.0)
    assert (both.api_environments, both.api_cold_starts) == (8, 8)
    assert both.cpu_seconds == {"client": pytest.approx(0.4)}
    assert figures(both)["requests_per_s"] == 5.0


def test_the_ratio_is_tasks_requests_per_second_over_the_no_ops() -> None:
    noop = Phase(NOOP, "r1", 8, 100, sent=100, ok=100, seconds=1.0)
    tasks = Phase(TASKS, "r1", 8, 100, sent=100, ok=100, seconds=1.25)

    assert ratio(tasks, noop) == pytest.approx(0.8)
    assert ratio(tasks, Phase(NOOP, "r1", 8, 100, sent=100, seconds=1.0)) is None
    assert verdict(0.873, 8) == "POST /tasks vs no-op at 8 threads: 0.87x (target >= 0.8)"
    assert "n/a" in verdict(None, 8)


def test_proc_stat_lines_are_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    line = "4242 (python (x) y) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 1 2 3"

    assert parse_stat(line) == (4242, 17, 300)


def test_descendants_follow_the_parent_links_down_only() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 30: 99}

    assert descendants(parents, 10) == {10, 11, 12}
    assert descendants(parents, 30) == {30}


def test_a_processs_function_is_read_from_its_environment() -> None:
    environ = b"PATH=/bin\0AWS_LAMBDA_FUNCTION_NAME=svc-local-worker\0_HANDLER=app.worker\0"

    assert function_name(environ) == "svc-local-worker"
    assert function_name(b"PATH=/bin\0") is None


def test_cpu_is_counted_process_by_process_so_an_ended_one_takes_nothing_away() -> None:
    before = {"functions": {10: 5.0, 11: 7.0}, "machine": {0: 100.0}}
    after = {"functions": {10: 5.5, 12: 0.25}, "machine": {0: 101.5}}  # 11 ended, 12 started

    assert cpu_delta(before, after) == {"functions": 0.75, "machine": 1.5}


def test_the_defaults_are_valid_on_loopback() -> None:
    args = arguments()

    validate(args, LOCAL_URL)

    assert (args.requests, args.threads, args.batches, args.rounds) == (400, 8, 20, 2)


def test_a_url_off_loopback_is_refused() -> None:
    with pytest.raises(BenchError, match="not on loopback"):
        validate(arguments(), "https://abc.execute-api.us-east-1.amazonaws.com/api/")


@pytest.mark.parametrize(
    "argv",
    [
        ("--requests", "0"),
        ("--requests", "5001"),
        ("--threads", "65"),
        ("--batches", "0"),
        ("--rounds", "11"),
        ("--warmup", "-1"),
        ("--max-seconds", "0"),
        ("--drain-seconds", "601"),
    ],
)
def test_out_of_bounds_options_are_refused(argv: tuple[str, str]) -> None:
    with pytest.raises(BenchError, match=argv[0]):
        validate(arguments(*argv), LOCAL_URL)
