"""How `tierwise bench placement` reads its measurements: floors, the best qualifying
fixed plan, regret, adaptation and the default floor's check, on made-up cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tierwise.bench import placement_policies as pol
from tierwise.bench.placement_report import floor_check, markdown, plot

ACCURACY = {"efficientnet-lite0": 0.88, "efficientnet-lite1": 0.868, "efficientnet-lite2": 0.856}
FAST, ACCURATE, BEST, DEFAULT = pol.bench_policies(
    ACCURACY, "efficientnet-lite0", "efficientnet-lite2"
)
QUALITY: dict[str, float | None] = {"int8": 0.80, "edge": 0.879, "local": 0.88, "cloud": 0.856}
FIXED = list(QUALITY)


def _cell(p50: float, plans: dict[str, int], floors: list[float] | None = None) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p95_ms": p50 * 1.2,
        "bytes": 1000.0,
        "usd_modelled": 0.0,
        "joules_modelled": 0.1,
        "correct": 3,
        "n": 4,
        "plans_used": plans,
        "floors": floors or [],
        "relaxed": 0,
    }


def _step(kbps: float, p50: dict[str, float], auto: dict[str, tuple[float, str]]) -> dict[str, Any]:
    plans = {name: _cell(ms, {name: 4}) for name, ms in p50.items()}
    for policy, (ms, plan) in auto.items():
        plans[f"auto:{policy}"] = _cell(ms, {plan: 4}, [0.87] if policy == "default" else None)
    return {"kbps": kbps, "plans": plans}


FAST_LINK = _step(
    2000,
    {"int8": 30, "edge": 80, "local": 150, "cloud": 140},
    {
        "fast": (150, "local"),
        "accurate": (82, "edge"),
        "best-1pt": (81, "edge"),
        "default": (84, "edge"),
    },
)
SLOW_LINK = _step(
    50,
    {"int8": 30, "edge": 600, "local": 150, "cloud": 700},
    {
        "fast": (152, "local"),
        "accurate": (155, "local"),
        "best-1pt": (155, "local"),
        "default": (160, "local"),
    },
)


def test_policies_take_their_floors_from_the_measured_models() -> None:
    assert FAST.min_quality == pytest.approx(0.88)  # the device model whole
    assert ACCURATE.min_quality == pytest.approx(0.846)  # a point below the cloud model
    assert BEST.min_quality == pytest.approx(0.87)  # a point below the most accurate
    assert DEFAULT.header is None and DEFAULT.min_quality is None
    assert "min_quality=0.8700" in (BEST.header or "")


def test_the_best_fixed_plan_is_the_fastest_that_meets_the_floor() -> None:
    """int8 is the fastest plan at both rates but misses every floor: it never counts."""
    judged = pol.judge_step(BEST, FAST_LINK, FIXED, QUALITY)
    assert judged["qualifying"] == ["edge", "local"]
    assert judged["best"] == "edge" and judged["regret"] == pytest.approx(81 / 80 - 1)
    assert judged["choice_regret"] == 0  # auto ran the best plan itself: noise is no regret
    assert pol.judge_step(ACCURATE, FAST_LINK, FIXED, QUALITY)["qualifying"] == FIXED[1:]
    assert pol.judge_step(FAST, FAST_LINK, FIXED, QUALITY)["qualifying"] == ["local"]
    # the default floor is the one the gateway reported to auto (0.87 here)
    assert pol.judge_step(DEFAULT, SLOW_LINK, FIXED, QUALITY)["best"] == "local"


def test_adaptation_is_measured_only_where_the_best_plan_changes() -> None:
    judged = [pol.judge_step(BEST, s, FIXED, QUALITY) for s in (FAST_LINK, SLOW_LINK)]
    assert pol.best_plan_changes(judged, [2000, 50]) == [(2000, 50)]
    same = [pol.judge_step(BEST, s, FIXED, QUALITY) for s in (SLOW_LINK, SLOW_LINK)]
    assert pol.best_plan_changes(same, [50, 50]) == []
    assert pol.requests_to_follow(["edge", "edge", "local", "local"], ["local"]) == 3
    assert pol.requests_to_follow(["edge"], ["local"]) is None
    # at 50 KB/s only the local plan is within 10% of the best qualifying one
    assert pol.good_enough(judged[1], SLOW_LINK) == ["local"]
    three = [*judged[:1], pol.judge_step(BEST, SLOW_LINK, FIXED, QUALITY), judged[1]]
    # the first neighbouring change, and the widest pair when it differs and is not it
    assert pol.best_plan_changes(three, [2000, 500, 50]) == [(2000, 500), (2000, 50)]


def _data() -> dict[str, Any]:
    steps = [FAST_LINK, SLOW_LINK]
    policies = [FAST, ACCURATE, BEST, DEFAULT]
    judged = {p.name: [pol.judge_step(p, s, FIXED, QUALITY) for s in steps] for p in policies}
    return {
        "environment": {"when": "now", "cpus": 2},
        "model_accuracy": ACCURACY,
        "profiled_photos": 250,
        "served_photos": 250,
        "photos_per_cell": 4,
        "policies": [p.__dict__ for p in policies],
        "fixed_plans": FIXED,
        "plan_quality": QUALITY,
        "steps": steps,
        "judged": judged,
        "step_changes": [],
        "chat": {"by_tier": {"device": ["smollm2"], "cloud": ["smollm2"]}, "same_everywhere": True},
    }


def test_the_report_checks_the_default_floor_and_declines_a_same_model_saving(
    tmp_path: Path,
) -> None:
    data = _data()
    assert floor_check(data) == {"requests": 8, "relaxed": 0, "below_floor_known": 0}
    data["steps"][1]["plans"]["auto:default"]["plans_used"] = {"int8": 4}
    assert floor_check(data)["below_floor_known"] == 4  # int8 (0.80) under the 0.87 floor
    text = markdown(data)
    assert "no saving is printed" in text and "% saved" not in text
    assert "No bandwidth step changed" in text
    assert plot(data, tmp_path / "p.png").stat().st_size > 10_000
