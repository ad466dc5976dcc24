"""The full-scale demo's preset and AWS's curve it is compared with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from burst import settings as burst_settings
from burst.errors import BurstError
from burst.settings import BurstSettings
from deployment import full_scale
from tests.benchmarks.full_scale import curve, seconds_to

REPO = Path(__file__).resolve().parents[2]


def test_aws_curve_starts_at_5_adds_300_a_minute_and_stops_at_1000() -> None:
    assert full_scale.aws_batches_at(0) == 5
    assert full_scale.aws_batches_at(60) == 305
    assert full_scale.aws_batches_at(198) == 995
    assert full_scale.aws_batches_at(199) == 1000
    assert full_scale.aws_batches_at(600) == 1000
    assert full_scale.aws_batches_at(600, maximum=950) == 950


def test_the_preset_is_within_the_burst_tools_bounds() -> None:
    preset = dict(full_scale.PRESET)
    sleep_ms = preset.pop("sleep_ms")
    settings = BurstSettings(**preset, payload_options={"sleep_ms": sleep_ms})
    burst_settings.check(settings)  # raises when out of bounds
    # A batch of 10 tasks must fit the fullscale stage's worker timeout (60 s).
    assert 10 * sleep_ms / 1000 < 60


@pytest.mark.parametrize("reserved", [-1, 901])
def test_a_reservation_the_account_cannot_grant_is_refused(reserved: int) -> None:
    with pytest.raises(BurstError, match="100 unreserved"):
        full_scale.check_reserved(reserved)


def test_the_benchmark_lines_up_the_mapping_with_aws_from_its_first_batch() -> None:
    points = [(3, 0.0), (4, 5.0), (14, 52.0), (24, 101.0), (25, 106.0)]

    assert curve(points) == [(0, 5.0, 5), (10, 52.0, 55), (20, 101.0, 105)]
    assert seconds_to(points, 100) == 20
    assert seconds_to(points, 1000) is None


def test_the_benchmark_s_stage_has_the_fullscale_stage_s_own_settings() -> None:
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    stage = config["stages"][full_scale.STAGE]["environment_variables"]
    assert {name: stage[name] for name in full_scale.STAGE_ENVIRONMENT} == (
        full_scale.STAGE_ENVIRONMENT
    )
