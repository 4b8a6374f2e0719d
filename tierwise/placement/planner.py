"""The planner: the best plan that meets the policy, and the order to fall back in.

Constraints come in two strengths:

- **hard**, never relaxed: privacy, budget (paid plans are out when the budget is
  exhausted), ``max_usd``, and reachability (the plan's nodes and link are up);
- **soft**, relaxed only when nothing meets them: ``max_latency_ms`` and ``min_quality``.
  Then the plan that misses them by the least is chosen, and the decision names which
  constraints were relaxed.

Among feasible plans the score is ``w_latency·s + w_usd·USD + w_energy·J``, less an
exploration bonus for chat plans whose speed rests on few measurements (see
:class:`~tierwise.config.ObjectiveWeights`).
:func:`decide` is pure and takes about 30 µs for ~50 plans; see ``tierwise bench placement``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierwise.config import LOCAL_ONLY, ObjectiveWeights, Policy
from tierwise.errors import BudgetExceeded, NoFeasiblePlan
from tierwise.placement.cost import LiveState, PlanTable


@dataclass
class Decision:
    table: PlanTable
    ranking: list[int]  # plan indices, best first: feasible ones, then relaxed ones
    latency: np.ndarray
    usd: np.ndarray
    joules: np.ndarray
    feasible: np.ndarray
    hard_ok: np.ndarray
    relaxed: list[str] = field(default_factory=list)

    @property
    def best(self) -> int:
        return self.ranking[0]

    def explain(
        self, policy: Policy, budget_ok: bool, live: LiveState, limit: int = 60
    ) -> list[dict[str, Any]]:
        """Every plan considered, with its prediction and why it was or was not eligible."""
        t = self.table
        reachable = t.reachable(live)
        rank = {plan: position + 1 for position, plan in enumerate(self.ranking)}
        out = []
        for i, plan in enumerate(t.plans[:limit]):
            out.append(
                {
                    "plan": plan.id,
                    "tiers": list(plan.tiers),
                    "latency_ms": _r(self.latency[i] * 1e3),
                    "usd": float(self.usd[i]),
                    "joules": _r(self.joules[i]),
                    "bytes_up": int(t.bytes_up[i]),
                    "bytes_down": int(t.bytes_down[i]),
                    "quality": None if np.isnan(t.quality[i]) else _r(t.quality[i], 4),
                    "rank": rank.get(i),
                    "excluded": _why_not(t, i, policy, budget_ok, reachable) or None,
                }
            )
        return out


def decide(table: PlanTable, live: LiveState, policy: Policy, budget_ok: bool) -> Decision:
    latency, usd, joules = table.predict(live)
    hard = _hard_ok(table, live, policy, budget_ok, usd)
    n_hard = int(np.count_nonzero(hard))
    if n_hard == 0:
        if not budget_ok and _hard_ok(table, live, policy, True, usd).any():
            raise BudgetExceeded(
                "the budget is exhausted and only paid plans can serve this request "
                "(no free plan meets its policy); retry after the budget period resets"
            )
        raise NoFeasiblePlan(_no_plan_message(table, live, policy, budget_ok))
    weights = policy.weights or _DEFAULT_WEIGHTS
    score = weights.latency * latency + weights.usd * usd + weights.energy * joules
    if weights.explore:
        score = score - weights.latency * weights.explore * table.uncertainty_s
    late, poor = _soft_misses(table, latency, policy)
    feasible = hard & ~late & ~poor
    # One sort gives the whole fallback order: feasible plans by score, then the plans
    # that only miss soft constraints, by how far they miss them and then by score.
    if np.count_nonzero(feasible) == len(feasible):
        key = score
    else:
        missing = _SOFT_BAND + _violation(table, latency, policy) * _MISS_SCALE + score
        key = np.where(feasible, score, np.where(hard, missing, np.inf))
    ranking = np.argsort(key, kind="stable")[:n_hard].tolist()
    relaxed: list[str] = []
    if not feasible[ranking[0]]:
        best = ranking[0]
        relaxed = [name for name, m in (("max_latency_ms", late), ("min_quality", poor)) if m[best]]
    return Decision(table, ranking, latency, usd, joules, feasible, hard, relaxed)


_DEFAULT_WEIGHTS = ObjectiveWeights()
# Sort keys: scores are seconds-equivalents far below 1e6, so a plan that misses a soft
# constraint (1e12 + shortfall x 1e6 + score) always sorts after every feasible one,
# and among them by shortfall first.
_SOFT_BAND, _MISS_SCALE = 1e12, 1e6


def _hard_ok(
    table: PlanTable, live: LiveState, policy: Policy, budget_ok: bool, usd: np.ndarray
) -> np.ndarray:
    ok = table.profiled & table.reachable(live)
    if policy.privacy in LOCAL_ONLY:
        ok &= ~table.sends_raw & ~table.sends_features
    elif policy.privacy == "features-may-leave":
        ok &= ~table.sends_raw
    if not budget_ok:
        ok &= ~table.paid
    if policy.max_usd is not None:
        ok &= usd <= policy.max_usd
    return np.asarray(ok)


def _soft_misses(
    table: PlanTable, latency: np.ndarray, policy: Policy
) -> tuple[np.ndarray, np.ndarray]:
    none = np.zeros(len(latency), bool)
    late = latency * 1e3 > policy.max_latency_ms if policy.max_latency_ms is not None else none
    if policy.min_quality is not None:
        # An unknown quality cannot be shown to meet a minimum.
        poor = ~(np.nan_to_num(table.quality, nan=-1.0) >= policy.min_quality)
    else:
        poor = none
    return np.asarray(late), np.asarray(poor)


def _violation(table: PlanTable, latency: np.ndarray, policy: Policy) -> np.ndarray:
    """How far each plan misses the soft constraints, as relative shortfalls."""
    if policy.max_latency_ms is None and policy.min_quality is None:
        return np.zeros(len(latency))
    miss = np.zeros(len(latency))
    if policy.max_latency_ms is not None:
        miss += np.maximum(0.0, latency * 1e3 / policy.max_latency_ms - 1.0)
    if policy.min_quality is not None and policy.min_quality > 0:
        quality = np.nan_to_num(table.quality, nan=0.0)
        miss += np.maximum(0.0, (policy.min_quality - quality) / policy.min_quality)
    return miss


def _why_not(
    table: PlanTable, i: int, policy: Policy, budget_ok: bool, reachable: np.ndarray
) -> str:
    reasons = []
    if not table.profiled[i]:
        reasons.append("not profiled")
    if not reachable[i]:
        reasons.append("node or link down")
    if policy.privacy in LOCAL_ONLY and (table.sends_raw[i] or table.sends_features[i]):
        reasons.append(f"privacy: {policy.privacy}")
    if policy.privacy == "features-may-leave" and table.sends_raw[i]:
        reasons.append("privacy: raw data would leave the device")
    if not budget_ok and table.paid[i]:
        reasons.append("budget exhausted")
    if policy.max_usd is not None and table.usd[i] > policy.max_usd:
        reasons.append(f"over max_usd {policy.max_usd}")
    return "; ".join(reasons)


def _no_plan_message(table: PlanTable, live: LiveState, policy: Policy, budget_ok: bool) -> str:
    counts: dict[str, int] = {}
    reachable = table.reachable(live)
    for i in range(len(table.plans)):
        for reason in _why_not(table, i, policy, budget_ok, reachable).split("; "):
            if reason:
                counts[reason] = counts.get(reason, 0) + 1
    summary = ", ".join(f"{reason} ({n} plans)" for reason, n in sorted(counts.items()))
    return f"no plan can serve this request under its policy: {summary or 'no candidate plans'}"


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
