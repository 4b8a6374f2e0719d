"""The planner: the best plan that meets the policy, and the order to fall back in.

Constraints come in two strengths:

- **hard**, never relaxed: privacy, budget (paid plans are out when the budget is
  exhausted), ``max_usd``, and reachability (the plan's nodes and link are up);
- **soft**, relaxed only when nothing meets them: ``max_latency_ms``, ``min_quality``
  and the quality floor ``max_quality_loss``. Then the plan that misses them by the
  least is chosen, and the decision names which constraints were relaxed.

The quality floor (:class:`QualityFloor`) applies where qualities are measured (vision
accuracy on labelled photos): no plan more than ``max_quality_loss`` below the best
measured plan among those the hard constraints allow. A plan of unknown quality cannot
be shown to meet it; when no allowed plan has a measured quality the floor cannot judge
at all, and the decision says so instead of pretending.

Among feasible plans the score is ``w_latency·s + w_usd·USD + w_energy·J +
w_quality·loss`` (loss: how far below the best measured quality), less an exploration
bonus for chat plans whose speed rests on few measurements (see
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

#: why a floor could not judge: nothing the request could use was measured
UNJUDGED = (
    "no plan this request could use has a measured accuracy (run `tierwise profile "
    "--data DIR` with the labelled photos), so max_quality_loss was not applied"
)


@dataclass(frozen=True)
class QualityFloor:
    """The quality floor of one decision: the best measured quality among the plans the
    request could use, the lowest one allowed, and why it could not judge if it could not."""

    best: float | None = None
    floor: float | None = None
    max_quality_loss: float | None = None
    unjudged: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "best": None if self.best is None else _r(self.best, 4),
            "floor": None if self.floor is None else _r(self.floor, 4),
            "max_quality_loss": self.max_quality_loss,
            "unjudged": self.unjudged,
        }


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
    quality_floor: QualityFloor = field(default_factory=QualityFloor)

    @property
    def best(self) -> int:
        return self.ranking[0]

    def explain(
        self, policy: Policy, budget_ok: bool, live: LiveState, limit: int | None = 60
    ) -> list[dict[str, Any]]:
        """The plans considered, best first, then those excluded (up to ``limit`` in all),
        with their predictions and why each was or was not eligible."""
        t = self.table
        reachable = t.reachable(live)
        rank = {plan: position + 1 for position, plan in enumerate(self.ranking)}
        ranked = set(self.ranking)
        order = [*self.ranking, *(i for i in range(len(t.plans)) if i not in ranked)]
        out = []
        for i in order[:limit]:
            plan = t.plans[i]
            out.append(
                {
                    "plan": plan.id,
                    "tiers": list(plan.tiers),
                    "latency_ms": _r(self.latency[i] * 1e3),
                    "usd_modelled": float(self.usd[i]),
                    "joules_modelled": _r(self.joules[i]),
                    "bytes_up": int(t.bytes_up[i]),
                    "bytes_down": int(t.bytes_down[i]),
                    "quality": None if np.isnan(t.quality[i]) else _r(t.quality[i], 4),
                    "agreement": None if np.isnan(t.agreement[i]) else _r(t.agreement[i], 4),
                    "rank": rank.get(i),
                    "excluded": _why_not(t, i, policy, budget_ok, reachable) or None,
                }
            )
        return out


def why_not(table: PlanTable, i: int, policy: Policy, budget_ok: bool, live: LiveState) -> str:
    """Why plan ``i`` breaks a hard constraint now ("" when it does not)."""
    return _why_not(table, i, policy, budget_ok, table.reachable(live))


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
    floor = quality_floor(table, hard, policy)
    weights = policy.weights or _DEFAULT_WEIGHTS
    score = weights.latency * latency + weights.usd * usd + weights.energy * joules
    if weights.explore:
        score = score - weights.latency * weights.explore * table.uncertainty_s
    if floor.best is not None and weights.quality:
        # an unknown quality adds no loss here: the floor, not the score, keeps it out
        loss = np.maximum(0.0, floor.best - table.quality_or_0) * table.quality_known
        score = score + weights.quality * loss
    misses = _soft_misses(table, latency, policy, floor)
    feasible = hard
    for missed in misses.values():
        feasible = feasible & ~missed
    # One sort gives the whole fallback order: feasible plans by score, then the plans
    # that only miss soft constraints, by how far they miss them and then by score.
    if np.count_nonzero(feasible) == len(feasible):
        key = score
    else:
        violation = _violation(table, latency, policy, floor)
        missing = _SOFT_BAND + violation * _MISS_SCALE + score
        key = np.where(feasible, score, np.where(hard, missing, np.inf))
    ranking = np.argsort(key, kind="stable")[:n_hard].tolist()
    relaxed = [name for name, m in misses.items() if m[ranking[0]]]
    return Decision(table, ranking, latency, usd, joules, feasible, hard, relaxed, floor)


def quality_floor(table: PlanTable, hard: np.ndarray, policy: Policy) -> QualityFloor:
    """The floor that ``policy``'s ``max_quality_loss`` puts under the plans ``hard`` allows."""
    loss = policy.loss_floor
    if loss is None or not table.quality_measured:
        return QualityFloor()
    judged = hard & table.quality_known
    if not judged.any():
        return QualityFloor(max_quality_loss=loss, unjudged=UNJUDGED)
    best = float(table.quality_or_neg[judged].max())
    return QualityFloor(best, best - loss, loss)


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


# A measured accuracy is a count over a few hundred photos: a plan exactly at the floor
# meets it, whatever the last float bit says.
_QUALITY_EPS = 1e-9


def _soft_misses(
    table: PlanTable, latency: np.ndarray, policy: Policy, floor: QualityFloor
) -> dict[str, np.ndarray]:
    """Each soft constraint set here, by name, with where it is missed."""
    misses: dict[str, np.ndarray] = {}
    if policy.max_latency_ms is not None:
        misses["max_latency_ms"] = np.asarray(latency * 1e3 > policy.max_latency_ms)
    # An unknown quality cannot be shown to meet a minimum.
    quality = table.quality_or_neg
    if policy.min_quality is not None:
        misses["min_quality"] = np.asarray(quality < policy.min_quality - _QUALITY_EPS)
    if floor.floor is not None:
        misses["max_quality_loss"] = np.asarray(quality < floor.floor - _QUALITY_EPS)
    return misses


def _violation(
    table: PlanTable, latency: np.ndarray, policy: Policy, floor: QualityFloor
) -> np.ndarray:
    """How far each plan misses the soft constraints, as relative shortfalls."""
    miss = np.zeros(len(latency))
    if policy.max_latency_ms is not None:
        miss += np.maximum(0.0, latency * 1e3 / policy.max_latency_ms - 1.0)
    quality = table.quality_or_0
    for minimum in (policy.min_quality, floor.floor):
        if minimum is not None and minimum > 0:
            miss += np.maximum(0.0, (minimum - quality) / minimum)
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
