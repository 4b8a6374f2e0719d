"""The rule every reported dollar and joule figure follows: its name says modelled or measured.

Dollars come from price tables and joules mostly from stated watts × seconds, so a bare
``usd`` would pass a model off as a meter reading. Policies and weights are settings,
not figures, and are skipped.
"""

from __future__ import annotations

import re
from typing import Any

SETTINGS = {"policy", "weights"}


def is_cost(name: str) -> bool:
    """Dollars (``usd``, ``$``) or joules (``joules``, a lone ``J`` as in ``J/req``)."""
    lowered = name.lower()
    return any(w in lowered for w in ("usd", "joule", "$")) or bool(_LONE_J.search(lowered))


_LONE_J = re.compile(r"(^|[^a-z])j([^a-z]|$)")


def names_its_kind(name: str) -> bool:
    return "modelled" in name or "measured" in name


def unlabelled(value: Any, where: str = "") -> list[str]:
    """Every key under ``value`` that is a cost figure and does not say which kind it is."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key in SETTINGS:
                continue
            if is_cost(str(key)) and not names_its_kind(str(key)):
                found.append(path)
            found += unlabelled(inner, path)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += unlabelled(inner, f"{where}[{i}]")
    return found


def assert_costs_labelled(value: Any) -> None:
    missing = unlabelled(value)
    assert not missing, f"cost figures that do not say modelled or measured: {missing}"
