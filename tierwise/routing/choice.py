"""Choosing one model from predicted quality and cost under a request's policy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tierwise.config import Policy

# The cost–quality weight: how many dollars per query one unit of accuracy is worth (0 buys
# the best predicted model, large values buy the cheapest). A policy's min_quality, when
# set, decides instead.
USD_PER_POINT = 0.01


@dataclass(frozen=True)
class RouteChoice:
    """The model chosen for one prompt, and what the choice saw."""

    model: str
    p_correct: dict[str, float]
    expected_usd: dict[str, float]
    decision_ms: float


def choose(
    p: np.ndarray, usd: np.ndarray, policy: Policy, usd_per_point: float = USD_PER_POINT
) -> int:
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
    score = np.where(allowed, p - usd / max(usd_per_point, 1e-12), -np.inf)
    return int(np.argmax(score))


def choose_many(p: np.ndarray, usd: np.ndarray, usd_per_point: float) -> np.ndarray:
    """Vectorised weighted choice for a batch (n, m) of predictions: for curve sweeps."""
    picks: np.ndarray = np.argmax(p - usd[None, :] / max(usd_per_point, 1e-12), axis=1)
    return picks
