"""How good a quality predictor's predictions are, as training scores them.

Choosing by predicted quality at each setting of the cost weight gives one (mean
$/query, accuracy) point per setting. Two points can always be mixed (send a random
share of prompts to each setting), so what a predictor can reach is the upper convex
hull of its points: RouterBench's "non-decreasing convex hull". Its mean accuracy over
a cost range (AIQ) is what cross-validation ranks learners by; AUROC says how well a
confidence separates right answers from wrong ones.
"""

from __future__ import annotations

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


def aiq(hull: list[Point], lo: float, hi: float) -> float:
    """Mean accuracy over costs in [lo, hi] (RouterBench's AIQ): area ÷ width.

    Below the hull's cheapest point the policy reaches nothing, counted as 0.
    """
    grid = np.linspace(lo, hi, 512)
    acc = np.array([accuracy_at(hull, c) for c in grid])
    return float(np.nan_to_num(acc, nan=0.0).mean())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Chance a right answer is more confident than a wrong one (0.5: no signal)."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
