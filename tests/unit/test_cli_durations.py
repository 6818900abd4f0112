"""Durations parse and print like Go's time package (flags in, health timings out)."""

from __future__ import annotations

import pytest

from etcdpy.cli.durations import DurationError, format_duration_ns, parse_duration, parse_duration_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("2s", 2_000_000_000),
        ("500ms", 500_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("-3s", -3_000_000_000),
        ("+.5s", 500_000_000),
        ("1h2m3.004s", 3_723_004_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("7ns", 7),
    ],
)
def test_parse(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == ns / 1e9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'time: invalid duration "abc"'),
        ("", 'time: invalid duration ""'),
        (".s", 'time: invalid duration ".s"'),
        ("5", 'time: missing unit in duration "5"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_errors_carry_gos_message(text: str, message: str) -> None:
    with pytest.raises(DurationError, match="^" + message.replace("(", r"\(") + "$"):
        parse_duration_ns(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (990_248, "990.248µs"),
        (1_448_259, "1.448259ms"),
        (5_000_215_844, "5.000215844s"),
        (90_000_000_000, "1m30s"),
        (7_200_000_000_000, "2h0m0s"),
        (-1_500_000, "-1.5ms"),
    ],
)
def test_format_like_go_duration_string(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text
