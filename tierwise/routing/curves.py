"""Cost–accuracy curves, their areas, and the cost of reaching a target accuracy.

A routing policy gives one (mean $/query, accuracy) point per setting of its cost weight.
Two points can always be mixed (send a random share of prompts to each setting), so what a
policy can reach is the upper convex hull of its points: RouterBench's "non-decreasing
convex hull". The same hull over the single models is the "random mixing" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]  # (mean USD per query, accuracy)


def upper_hull(points: list[Point]) -> list[Point]:
    """The non-decreasing upper convex hull, cheapest first."""
    pts = sorted(set(points))
    hull: list[Point] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # costs more, answers no better
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return hull


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def accuracy_at(hull: list[Point], usd: float) -> float:
    """Best accuracy the hull reaches for at most ``usd`` per query (NaN if too cheap)."""
    if not hull or usd < hull[0][0]:
        return float("nan")
    xs = [p[0] for p in hull]
    ys = [p[1] for p in hull]
    return float(np.interp(usd, xs, ys))


def cost_to_reach(hull: list[Point], accuracy: float) -> float:
    """Least mean cost at which the hull reaches ``accuracy`` (inf if it never does)."""
    for (c0, a0), (c1, a1) in zip([(0.0, -1.0), *hull[:-1]], hull, strict=True):
        if a1 >= accuracy:
            if a0 < 0 or a1 == a0:
                return c1
            return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0)
    return float("inf")


def aiq(hull: list[Point], lo: float, hi: float) -> float:
    """Mean accuracy over costs in [lo, hi] (RouterBench's AIQ): area ÷ width.

    Below the hull's cheapest point the policy reaches nothing, counted as 0.
    """
    grid = np.linspace(lo, hi, 512)
    acc = np.array([accuracy_at(hull, c) for c in grid])
    return float(np.nan_to_num(acc, nan=0.0).mean())


@dataclass(frozen=True)
class Frontier:
    """The best single models: each costs more and answers better than the one before."""

    models: list[str]
    points: list[Point]

    def best_at(self, usd: float) -> float:
        """Best single-model accuracy for at most ``usd`` per query."""
        fits = [a for c, a in self.points if c <= usd + 1e-12]
        return max(fits) if fits else float("nan")


def single_model_points(
    models: list[str], correct: np.ndarray, cost: np.ndarray
) -> dict[str, Point]:
    return {
        m: (float(cost[:, j].mean()), float(correct[:, j].mean())) for j, m in enumerate(models)
    }


def frontier(points: dict[str, Point]) -> Frontier:
    names, pts, best = [], [], -1.0
    for name, (c, a) in sorted(points.items(), key=lambda kv: (kv[1][0], -kv[1][1])):
        if a > best:
            names.append(name)
            pts.append((c, a))
            best = a
    return Frontier(names, pts)


def oracle_point(correct: np.ndarray, cost: np.ndarray) -> Point:
    """Each prompt to its cheapest correct model (or the cheapest model if none is)."""
    right = np.where(correct > 0.5, cost, np.inf)
    pick = np.where(np.isinf(right.min(1)), cost.argmin(1), right.argmin(1))
    rows = np.arange(len(cost))
    return float(cost[rows, pick].mean()), float(correct[rows, pick].mean())


def random_mix_points(points: dict[str, Point]) -> list[Point]:
    """Random mixing of single models: exactly the hull of their points."""
    return upper_hull(list(points.values()))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Chance a right answer is more confident than a wrong one (0.5: no signal)."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
