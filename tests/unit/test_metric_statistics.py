"""CloudWatch statistics as AWS defines them (localcloud_ext.metric_statistics): stat parsing,
periods, nearest-rank percentiles over weighted values (the SQL, run by SQLite in memory),
result order."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from typing import Any

import pytest

from localcloud_ext.metric_statistics import (
    Statistic,
    UnsupportedStatistic,
    in_scan_order,
    parse_statistic,
    percentile_rows_query,
    percentiles_by_bucket,
    value_counts,
    window_end,
)


@pytest.mark.parametrize("stat", ["Sum", "Average", "Minimum", "Maximum", "SampleCount"])
def test_basic_statistics_parse_as_themselves(stat: str) -> None:
    assert parse_statistic(stat) == Statistic(stat)


@pytest.mark.parametrize(
    ("stat", "percentile"),
    [
        ("p50", Fraction(50)),
        ("p99", Fraction(99)),
        ("p99.9", Fraction(999, 10)),
        ("p99.99", Fraction(9999, 100)),
        ("p0.1", Fraction(1, 10)),
        ("p100", Fraction(100)),
    ],
)
def test_percentiles_parse_exactly(stat: str, percentile: Fraction) -> None:
    assert parse_statistic(stat) == Statistic(stat, percentile)


@pytest.mark.parametrize(
    "stat", ["p0", "p0.0", "p100.1", "p101", "P99", "p", "p-1", "p99.", "tm99", "sum", "", None]
)
def test_other_statistics_are_refused(stat: str | None) -> None:
    with pytest.raises(UnsupportedStatistic, match="is not supported"):
        parse_statistic(stat)


def test_window_end_covers_whole_periods_as_localstack_does() -> None:
    assert window_end(0, 60, 60) == 60
    assert window_end(0, 61, 60) == 120  # the last period starts before the end
    assert window_end(0, 900, 1) == 900
    assert window_end(10, 10, 1) == 10  # nothing to read
    assert window_end(10, 5, 1) == 10


def sorted_rows(rows: list[tuple[int, float, float]]) -> list[Any]:
    """What percentile_rows_query answers for `rows`: run by SQLite in memory."""
    with sqlite3.connect(":memory:") as connection:
        connection.execute("CREATE TABLE samples (bucket INTEGER, value NUMERIC, count NUMERIC)")
        connection.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
        query = percentile_rows_query("SELECT bucket, value, count FROM samples")
        return connection.execute(query).fetchall()


def percentiles(rows: list[tuple[int, float, float]], percentile: Fraction) -> list[Any]:
    return percentiles_by_bucket(sorted_rows(rows), percentile)


def nearest_rank(values: list[tuple[float, float]], percentile: Fraction) -> float | None:
    answer = percentiles([(0, value, count) for value, count in values], percentile)
    return answer[0][1] if answer else None


def test_the_rows_are_one_count_per_distinct_value_sorted() -> None:
    rows = [(1, 5.0, 1.0), (0, 3.0, 2.0), (0, 3.0, 1.0), (0, 1.0, 0.0), (0, 2.0, 1.0)]
    assert sorted_rows(rows) == [(0, 2.0, 1.0), (0, 3.0, 3.0), (1, 5.0, 1.0)]


def test_nearest_rank_of_one_to_ten() -> None:
    values = [(float(v), 1.0) for v in range(1, 11)]
    assert nearest_rank(values, Fraction(50)) == 5
    assert nearest_rank(values, Fraction(90)) == 9  # exact rank 9, not 9.000...2 -> 10
    assert nearest_rank(values, Fraction(91)) == 10
    assert nearest_rank(values, Fraction(99)) == 10
    assert nearest_rank(values, Fraction(100)) == 10
    assert nearest_rank(values, Fraction(1, 10)) == 1


def test_nearest_rank_counts_each_value_count_times() -> None:
    # 1 x 9, 100 x 1: p90 is rank 9 of 10 -> 1; p91 -> rank 9.1 -> the 10th -> 100
    values = [(1.0, 9.0), (100.0, 1.0)]
    assert nearest_rank(values, Fraction(90)) == 1
    assert nearest_rank(values, Fraction(91)) == 100
    assert nearest_rank([(7.0, 1.0), (3.0, 1.0)], Fraction(50)) == 3  # unsorted rows


def test_nearest_rank_skips_zero_counts_and_answers_none_when_empty() -> None:
    assert nearest_rank([], Fraction(50)) is None
    assert nearest_rank([(5.0, 0.0)], Fraction(50)) is None
    assert nearest_rank([(1.0, 0.0), (5.0, 2.0)], Fraction(1)) == 5


def test_percentiles_per_bucket() -> None:
    rows = [(0, 1.0, 1.0), (0, 2.0, 1.0), (0, 3.0, 2.0), (1, 7.0, 0.0), (2, 4.0, 1.0)]
    assert percentiles(rows, Fraction(50)) == [(0, 2.0), (2, 4.0)]
    assert percentiles(rows, Fraction(100)) == [(0, 3.0), (2, 4.0)]
    assert percentiles([], Fraction(50)) == []
    assert percentiles([(0, 1.0, 1.0)] * 999 + [(0, 9.0, 1.0)], Fraction(999, 10)) == [(0, 1.0)]


def test_in_scan_order_has_localstacks_shape() -> None:
    points = [(10, 1.0), (11, 2.0)]
    assert in_scan_order(points, descending=False) == {"timestamps": [10, 11], "values": [1, 2]}
    assert in_scan_order(points, descending=True) == {"timestamps": [11, 10], "values": [2, 1]}


def test_value_lists_become_one_count_per_distinct_value() -> None:
    assert value_counts([1, 1, 5, 1], [2, 3, 1, 0]) == [(1.0, 5.0), (5.0, 1.0)]
    assert value_counts([7, 7, 3], None) == [(7.0, 2.0), (3.0, 1.0)]
    assert value_counts([4], [0]) == []
