"""The policies `tierwise bench placement` compares, and how its tables are read.

Each policy is a quality floor. A fixed plan *qualifies* under a policy when its measured
accuracy (profiled on photos the benchmark does not serve) is at or above the floor; the
best fixed plan at a rate is the qualifying one with the lowest p50 there, and auto's
regret is measured against that plan only, so auto is never credited for beating a plan
by answering worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Floors are compared at this tolerance: accuracies are fractions of a few hundred photos.
EPS = 1e-9
#: Auto follows a change once its plan is the one it settles on at the new rate.
FOLLOW_TARGET = 3
REGRET_TARGET = 0.10


@dataclass(frozen=True)
class BenchPolicy:
    name: str
    #: the X-Tierwise-Policy header auto is sent with; None: the gateway's default policy
    header: str | None
    #: the floor fixed plans are held to; None: the floor the gateway reports per request
    min_quality: float | None
    why: str


def bench_policies(
    accuracy: dict[str, float], device_model: str, cloud_model: str
) -> list[BenchPolicy]:
    """The issue's two floors, as it defines them: ``fast``, the device model's accuracy
    (Lite0's: no loss against running it whole on the device); ``accurate``, one point
    below the cloud model's (Lite2's). Which is stricter depends on the measured order,
    which on the shared photos is not the published one, so two more floors say what
    each means whatever the order: ``best-1pt``, one point below the most accurate whole
    model; ``default``, the gateway's own floor (one point below the best plan the
    request could use, codecs included)."""
    top_model = max(accuracy, key=lambda m: accuracy[m])
    device, cloud, top = accuracy[device_model], accuracy[cloud_model] - 0.01, accuracy[top_model]
    return [
        BenchPolicy(
            "fast",
            f"quality=any; min_quality={device:.4f}",
            device,
            f"accuracy ≥ {device:.1%}, the device model's ({device_model}) whole",
        ),
        BenchPolicy(
            "accurate",
            f"quality=any; min_quality={cloud:.4f}",
            cloud,
            f"accuracy ≥ {cloud:.1%}, one point below the cloud model's ({cloud_model}, "
            f"{accuracy[cloud_model]:.1%})",
        ),
        BenchPolicy(
            "best-1pt",
            f"quality=any; min_quality={top - 0.01:.4f}",
            top - 0.01,
            f"accuracy ≥ {top - 0.01:.1%}, one point below the most accurate whole model "
            f"({top_model}, {top:.1%})",
        ),
        BenchPolicy(
            "default",
            None,
            None,
            "the gateway's default floor: one point below the best plan the request could use",
        ),
    ]


def auto_cell(policy: BenchPolicy) -> str:
    return f"auto:{policy.name}"


def floor_of(policy: BenchPolicy, step: dict[str, Any]) -> float | None:
    """The floor fixed plans are held to at this step (the default's, as auto was told)."""
    if policy.min_quality is not None:
        return policy.min_quality
    floors = step["plans"][auto_cell(policy)]["floors"]
    return min(floors) if floors else None


def qualifying(
    policy: BenchPolicy, step: dict[str, Any], fixed: list[str], quality: dict[str, float | None]
) -> list[str]:
    floor = floor_of(policy, step)
    return [
        p
        for p in fixed
        if floor is None or ((q := quality.get(p)) is not None and q >= floor - EPS)
    ]


def judge_step(
    policy: BenchPolicy, step: dict[str, Any], fixed: list[str], quality: dict[str, float | None]
) -> dict[str, Any]:
    """The best qualifying fixed plan at this step and auto's regret against it."""
    plans = step["plans"]
    ok = qualifying(policy, step, fixed, quality)
    auto = plans[auto_cell(policy)]
    if not ok:
        return {"floor": floor_of(policy, step), "qualifying": [], "best": None, "regret": None}
    best = min(ok, key=lambda p: plans[p]["p50_ms"])
    return {
        "floor": floor_of(policy, step),
        "qualifying": ok,
        "best": best,
        "best_p50_ms": plans[best]["p50_ms"],
        "auto_p50_ms": auto["p50_ms"],
        "regret": auto["p50_ms"] / plans[best]["p50_ms"] - 1,
        "choice_regret": _choice_regret(auto["plans_used"], plans, plans[best]["p50_ms"]),
        "auto_plans": auto["plans_used"],
    }


def _choice_regret(
    used: dict[str, int], plans: dict[str, dict[str, Any]], best_ms: float
) -> float | None:
    """What auto's choices cost, read off the fixed plans' own cells: the mean of their
    p50s, weighted by use, over the best's. Two cells of one plan differ by the run's
    noise (up to ~10% here); this does not. None where auto used a plan not measured
    as a fixed plan."""
    if any(p not in plans for p in used):
        return None
    total = sum(used.values())
    return float(sum(n * plans[p]["p50_ms"] for p, n in used.items()) / total / best_ms - 1)


def best_plan_changes(
    judged: list[dict[str, Any]], rates: list[float]
) -> list[tuple[float, float]]:
    """Rate pairs at which the best qualifying fixed plan differs: the first neighbouring
    pair where it changes (often a near tie), and the widest pair (the fastest rate
    against the slowest) where it differs, a change no planner can call a tie."""
    best = [j["best"] for j in judged]
    pairs = [
        (rates[i - 1], rates[i])
        for i in range(1, len(rates))
        if best[i] is not None and best[i - 1] is not None and best[i] != best[i - 1]
    ][:1]
    wide = (rates[0], rates[-1])
    if len(rates) > 1 and best[0] and best[-1] and best[0] != best[-1] and wide not in pairs:
        pairs.append(wide)
    return pairs


def good_enough(judged: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The qualifying fixed plans within the regret target of the best one at a rate:
    auto has followed a change once it runs one of these (or its own settled plan)."""
    if judged["best"] is None:
        return []
    limit = judged["best_p50_ms"] * (1 + REGRET_TARGET)
    return [p for p in judged["qualifying"] if step["plans"][p]["p50_ms"] <= limit]


def settled_plan(cell: dict[str, Any]) -> str:
    """The plan auto chose most often at a rate, once it had seen the link."""
    used: dict[str, int] = cell["plans_used"]
    return max(used, key=lambda p: used[p])


def requests_to_follow(after: list[str], targets: list[str]) -> int | None:
    """1-based index of the first request after a change that ran one of ``targets``."""
    return next((i + 1 for i, plan in enumerate(after) if plan in targets), None)
