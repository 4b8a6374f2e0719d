"""A cascade: ask the cheapest model first, escalate only when its answer looks unsure.

Replayed here from stored answers (the benchmark; ``vote_cascade.py`` has its voting
kin). The live cascade in the gateway asks SmolLM2 first and scores its answer by token
log-probabilities (``gateway/chat_cascade.py``).

At step j the scorer sees: the router's predicted chance that model j is right, how many
of the answers already bought agree with model j's answer, and the answer's length. One
small logistic scorer per step is trained on the training split (with out-of-fold router
predictions, so it does not trust the router more than the router deserves). An answer
is accepted when its score clears the threshold; sweeping the threshold traces a curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tierwise.routing import learners
from tierwise.routing.answers import answer_key
from tierwise.routing.metrics import Point
from tierwise.routing.replay import curves

THRESHOLDS = np.linspace(0.0, 1.0, 101)


def _features(p: np.ndarray, keys: list[list[str]], lengths: np.ndarray, j: int) -> np.ndarray:
    """Rows of [logit p_j, share of earlier answers agreeing, log answer length]."""
    q = np.clip(p[:, j], 1e-3, 1 - 1e-3)
    agree = np.array(
        [sum(k[i] == k[j] for i in range(j)) / j if j else 0.0 for k in keys], np.float32
    )
    return np.stack([np.log(q / (1 - q)), agree, np.log1p(lengths[:, j])], axis=1)


@dataclass
class Cascade:
    chain: list[int]  # model columns, cheapest first
    scorers: list[learners.Learner]

    @classmethod
    def train(
        cls, chain: list[int], p_oof: np.ndarray, responses: list[list[str]], correct: np.ndarray
    ) -> Cascade:
        keys, lengths = _keys(responses, chain)
        scorers = []
        for step, col in enumerate(chain):
            x = _features(p_oof[:, chain], keys, lengths, step)
            y = correct[:, col : col + 1]
            scorers.append(learners.make("logistic", {"l2": 0.01, "epochs": 300}).fit(x, y))
        return cls(chain, scorers)

    def scores(self, p: np.ndarray, responses: list[list[str]]) -> np.ndarray:
        """(n, steps) chance each step's answer is right, as the scorers see it."""
        keys, lengths = _keys(responses, self.chain)
        return np.concatenate(
            [
                s.predict(_features(p[:, self.chain], keys, lengths, j))
                for j, s in enumerate(self.scorers)
            ],
            axis=1,
        )

    def replay(
        self, p: np.ndarray, responses: list[list[str]], correct: np.ndarray, cost: np.ndarray
    ) -> list[Point]:
        """One point per threshold: models are paid for as they are asked."""
        score = self.scores(p, responses)
        n = score.shape[0]
        paid = np.cumsum(cost[:, self.chain], axis=1)
        right = correct[:, self.chain]
        points = []
        for threshold in THRESHOLDS:
            accept = score >= threshold
            accept[:, -1] = True
            stop = accept.argmax(axis=1)
            rows = np.arange(n)
            points.append((float(paid[rows, stop].mean()), float(right[rows, stop].mean())))
        return points


def _keys(responses: list[list[str]], chain: list[int]) -> tuple[list[list[str]], np.ndarray]:
    keys = [[answer_key(r[c]) for c in chain] for r in responses]
    lengths = np.array([[len(r[c]) for c in chain] for r in responses], np.float32)
    return keys, lengths


def default_chain(points: dict[str, Point], models: list[str]) -> list[int]:
    """The single-model frontier on the training data, cheapest first."""
    front = curves.frontier(points)
    return [models.index(m) for m in front.models]
