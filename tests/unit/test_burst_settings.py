"""The burst's settings: bounded, loopback only, every problem named with its fix."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from burst import settings as burst_settings
from burst.errors import BurstError
from burst.settings import BurstSettings, check, check_loopback, problems
from chalicelib.task_types import TASK_TYPES


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"count": 0}, "--count 0"),
        ({"count": 30_001}, "--count 30001"),
        ({"rate": 0}, "--rate"),
        ({"rate": 1e6}, "--rate"),
        ({"duration": 3600}, "--duration"),
        ({"batch": 101}, "--batch"),
        ({"threads": 0}, "--threads"),
        ({"threads": 500}, "--threads"),
        ({"max_seconds": 86_400}, "--max-seconds"),
        ({"drain_seconds": -1}, "--drain-seconds"),
        ({"payload_options": {"sleep_ms": 60_000}}, "--ms 60000"),
        ({"payload_options": {"cpu_rounds": 0}}, "--rounds 0"),
        ({"payload_options": {"failure_rate": 1.5}}, "--failure-rate 1.5"),
        ({"task_type": "teleport"}, "--type 'teleport'"),
        ({"profile": "sawtooth"}, "--profile 'sawtooth'"),
        ({"duration": 200, "max_seconds": 100}, "raise --max-seconds or shorten --duration"),
    ],
)
def test_a_setting_out_of_bounds_is_refused_naming_the_option(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(BurstError, match="nothing was sent") as refused:
        check(dataclasses.replace(BurstSettings(), **changes))

    assert named in str(refused.value)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(BurstSettings(count=0, rate=0, threads=0))

    assert [p.split()[0] for p in found] == ["--count", "--rate", "--threads"]


def test_the_defaults_and_a_5000_task_batched_spike_pass() -> None:
    check(BurstSettings())
    check(BurstSettings(profile="spike", count=5000, batch=100))


def test_out_must_be_a_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "report"
    a_file.write_text("")

    with pytest.raises(BurstError, match="--out"):
        check(BurstSettings(out_dir=a_file))


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:4566/_aws/execute-api/x/api/",
        "https://abc.execute-api.us-east-1.amazonaws.com/api/",
        "http://example.com/",
    ],
)
def test_a_url_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(BurstError, match="not on loopback"):
        check_loopback(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4566/x/", "http://localhost:4640/x/", "http://[::1]:4566/x/"]
)
def test_loopback_urls_pass(url: str) -> None:
    check_loopback(url)


def test_the_command_line_maps_onto_the_settings() -> None:
    parser = argparse.ArgumentParser()
    burst_settings.add_arguments(parser)

    args = parser.parse_args(
        ["--profile", "ramp", "--count", "40", "--type", "sleep", "--ms", "5", "--batch", "10"]
    )
    settings = burst_settings.from_args(args)

    assert (settings.profile, settings.count, settings.task_type) == ("ramp", 40, "sleep")
    assert (settings.payload_options["sleep_ms"], settings.batch) == (5, 10)


def test_a_preset_changes_the_defaults_and_options_still_win() -> None:
    parser = argparse.ArgumentParser()
    burst_settings.add_arguments(parser, defaults={"count": 600, "task_type": "sleep"})

    preset = burst_settings.from_args(parser.parse_args([]))
    overridden = burst_settings.from_args(parser.parse_args(["--count", "10"]))

    assert (preset.count, preset.task_type, overridden.count) == (600, "sleep", 10)


def test_an_unknown_type_on_the_command_line_stops_argparse_with_status_2() -> None:
    parser = argparse.ArgumentParser()
    burst_settings.add_arguments(parser)

    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--type", "teleport"])

    assert stopped.value.code == 2


def test_every_burst_option_of_the_registry_is_on_the_command_line_with_its_default() -> None:
    parser = argparse.ArgumentParser()
    burst_settings.add_arguments(parser)
    options = [o for t in TASK_TYPES.values() for o in t.burst_options]

    defaults = burst_settings.from_args(parser.parse_args([])).payload_options
    given = burst_settings.from_args(
        parser.parse_args(["--rounds", "7", "--failure-rate", "0.25"])
    ).payload_options

    assert [o.flag for o in options] == ["--ms", "--rounds", "--failure-rate"]
    assert defaults == {o.name: o.default for o in options}
    assert (given["cpu_rounds"], given["failure_rate"]) == (7, 0.25)


def test_a_preset_may_set_a_payload_option_and_a_report_holds_it_flat() -> None:
    parser = argparse.ArgumentParser()
    burst_settings.add_arguments(parser, defaults={"sleep_ms": 300})

    settings = burst_settings.from_args(parser.parse_args([]))

    assert settings.to_json()["sleep_ms"] == 300
    assert "payload_options" not in settings.to_json()


def test_an_unknown_payload_option_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="sleep_seconds"):
        BurstSettings(payload_options={"sleep_seconds": 1})


def test_the_mix_is_described_from_the_registrys_weights() -> None:
    assert burst_settings.mix_in_words() == "60%% echo, 30%% sleep, 10%% cpu"
