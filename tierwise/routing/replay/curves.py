"""The baselines a replayed policy is measured against, and the cost of reaching a target
accuracy on its hull.

A routing policy gives one (mean $/query, accuracy) point per setting of its cost weight.
Two points can always be mixed (send a random share of prompts to each setting), so what a
policy can reach is the upper convex hull of its points (``metrics.upper_hull``). The same
hull over the single models is the "random mixing" baseline; the best single models form
the frontier, and the oracle sends each prompt to its cheapest right model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tierwise.routing.metrics import Point, upper_hull


def cost_to_reach(hull: list[Point], accuracy: float) -> float:
    """Least mean cost at which the hull reaches ``accuracy`` (inf if it never does)."""
    for (c0, a0), (c1, a1) in zip([(0.0, -1.0), *hull[:-1]], hull, strict=True):
        if a1 >= accuracy:
            if a0 < 0 or a1 == a0:
                return c1
            return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0)
    return float("inf")


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
