"""Go-style durations: parse ``2s``, ``500ms``, ``1m30s`` and print as Go's Duration.String.

etcdctl's timeout flags are Go durations and its ``endpoint health`` output
prints elapsed time with Go's formatting (``1.448259ms``, ``990.248µs``), so both
directions follow Go's ``time`` package, error texts included.
"""

from __future__ import annotations

import re

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_MAX_NS = 2**63 - 1


class DurationError(ValueError):
    """A duration Go's time.ParseDuration would reject; the text is Go's message."""


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration into integer nanoseconds."""
    invalid = DurationError(f'time: invalid duration "{text}"')
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        match = _PART.match(s)
        assert match is not None  # the pattern matches the empty string
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise invalid
        if not unit:
            raise DurationError(f'time: missing unit in duration "{text}"')
        if unit not in _UNIT_NS:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{text}"')
        scale = _UNIT_NS[unit]
        part = int(whole or "0") * scale
        if frac:
            part += int(frac) * scale // 10 ** len(frac)
        total += part
        if total > _MAX_NS:
            raise invalid
        s = s[match.end() :]
    return -total if negative else total


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds."""
    return parse_duration_ns(text) / 1e9


def _fraction(value: int, digits: int) -> str:
    """``value`` scaled down by 10**digits, written without trailing zeros."""
    whole, frac = divmod(value, 10**digits)
    text = str(frac).rjust(digits, "0").rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def format_duration_ns(ns: int) -> str:
    """Format nanoseconds like Go's Duration.String (``1h2m3.5s``, ``1.5ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    n = abs(ns)
    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{_fraction(n, 3)}µs"
    if n < 1_000_000_000:
        return f"{sign}{_fraction(n, 6)}ms"
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"
