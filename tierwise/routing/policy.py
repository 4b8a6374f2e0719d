"""Choosing one model from predicted quality and cost under a request's policy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoutePolicy:
    """What the caller asks for. With none set, quality per dollar at the default weight.

    ``usd_per_point`` is the cost–quality weight: how many dollars per query one unit of
    accuracy is worth (0 buys the best predicted model, large values buy the cheapest).
    """

    min_quality: float | None = None
    max_usd: float | None = None
    usd_per_point: float = 0.01


def choose(p: np.ndarray, usd: np.ndarray, policy: RoutePolicy) -> int:
    """Index of the model to use for one prompt.

    ``min_quality``: the cheapest model predicted to reach it, else the best predicted.
    ``max_usd``: only models expected to cost at most that. Then the weighted score.
    """
    allowed = np.ones(len(p), bool)
    if policy.max_usd is not None:
        allowed &= usd <= policy.max_usd
        if not allowed.any():
            return int(np.argmin(usd))
    if policy.min_quality is not None:
        good = allowed & (p >= policy.min_quality)
        if good.any():
            return int(np.flatnonzero(good)[np.argmin(usd[good])])
        return int(np.flatnonzero(allowed)[np.argmax(p[allowed])])
    score = np.where(allowed, p - usd / max(policy.usd_per_point, 1e-12), -np.inf)
    return int(np.argmax(score))


def choose_many(p: np.ndarray, usd: np.ndarray, usd_per_point: float) -> np.ndarray:
    """Vectorised weighted choice for a batch (n, m) of predictions: for curve sweeps."""
    picks: np.ndarray = np.argmax(p - usd[None, :] / max(usd_per_point, 1e-12), axis=1)
    return picks
