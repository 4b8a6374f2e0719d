"""Parsing and formatting of the human units used in specs and on the command line.

Rates are bytes per second with decimal prefixes (1 KB/s = 1000 B/s), as network
links are quoted. Sizes accept both decimal (MB) and binary (MiB) prefixes.
Durations accept us, ms, s.
"""

from __future__ import annotations

import re

_RATE_UNITS = {
    "b/s": 1.0,
    "kb/s": 1e3,
    "mb/s": 1e6,
    "gb/s": 1e9,
    "kib/s": 1024.0,
    "mib/s": 1024.0**2,
    "gib/s": 1024.0**3,
}
_SIZE_UNITS: dict[str, float] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z/]*)\s*$")


def _parse(text: str, units: dict[str, float], what: str, example: str) -> float:
    """A number with an optional unit from ``units``; no unit means the base unit."""
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a {what}; expected something like {example!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "":
        return number
    if unit not in units:
        raise ValueError(f"unknown {what} unit {unit!r} in {text!r}; use one of {sorted(units)}")
    return number * units[unit]


def parse_rate(value: str | float | int) -> float:
    """``"300KB/s"`` → 300000.0 bytes per second. A bare number is bytes per second."""
    if isinstance(value, (int, float)):
        return float(value)
    return _parse(value, _RATE_UNITS, "rate", "300KB/s")


def parse_size(value: str | int) -> int:
    """``"16MiB"`` → 16777216 bytes. A bare number is bytes."""
    if isinstance(value, int):
        return value
    return int(_parse(value, _SIZE_UNITS, "size", "16MiB"))


def parse_duration(value: str | float | int) -> float:
    """``"30ms"`` → 0.03 seconds. A bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    return _parse(value, _TIME_UNITS, "duration", "30ms")


def format_rate(bytes_per_s: float) -> str:
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.4g}{unit}"
    return f"{bytes_per_s:.4g}B/s"


def format_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def format_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms"
