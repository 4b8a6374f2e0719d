"""The contract of anything that predicts, per prompt, which models would answer right.

The gateway needs only this: the models a predictor knows, their chance of a right answer
to a prompt, and (for a choice made here) what each is expected to cost. How the
prediction is made (a learned router, a fixed table) is the subclass's business.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np

from tierwise.config import Policy
from tierwise.routing.choice import USD_PER_POINT, RouteChoice, choose

_NO_POLICY = Policy()


class QualityPredictor(ABC):
    """Predicts P(correct) of each of ``models`` for each prompt.

    Subclasses set ``models`` (the columns of ``predict``, in order) and ``usd`` (each
    model's expected cost per query, in the same order) and implement ``predict``.
    """

    models: list[str]
    usd: np.ndarray

    @abstractmethod
    def predict(self, prompts: list[str]) -> np.ndarray:
        """(len(prompts), len(models)) chances that each model answers each prompt right."""

    def prepare(self) -> None:
        """Load now what the first ``predict`` would, so a server's first request waits for
        no model load. Nothing to load by default."""

    def decide(
        self, prompt: str, policy: Policy | None = None, usd_per_point: float = USD_PER_POINT
    ) -> RouteChoice:
        """The model for one prompt under the request's ``min_quality`` and ``max_usd``;
        without ``min_quality``, the best quality per dollar at ``usd_per_point``."""
        start = time.perf_counter()
        p = self.predict([prompt])[0]
        pick = choose(p, self.usd, policy or _NO_POLICY, usd_per_point)
        elapsed = (time.perf_counter() - start) * 1e3
        return RouteChoice(
            self.models[pick],
            dict(zip(self.models, map(float, p), strict=True)),
            dict(zip(self.models, map(float, self.usd), strict=True)),
            elapsed,
        )
