"""The learned router: train on labelled data, save without pickle, predict per prompt.

Training tries every learner in ``learners.CANDIDATES`` with k-fold cross-validation on
the training data only, scores each by the area under its cost–accuracy hull (AIQ), keeps
the winner and refits it on all the training data. The test split is never seen here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.arrays_file import read_arrays, write_arrays
from tierwise.errors import InputError
from tierwise.routing import learners
from tierwise.routing.choice import choose_many
from tierwise.routing.dataset import RoutingData
from tierwise.routing.features import Encoder, Template, featurize, make_encoder
from tierwise.routing.metrics import Point, aiq, upper_hull
from tierwise.routing.predictor import QualityPredictor

FORMAT = "tierwise-router/1"
# Dollars one unit of accuracy is worth: swept from "cheapest always" to "best always".
SWEEP = np.concatenate([np.geomspace(1e-7, 1e2, 120)])


@dataclass(frozen=True)
class CVScore:
    kind: str
    params: dict[str, float]
    aiq: float
    log_loss: float


def sweep_points(
    p: np.ndarray, correct: np.ndarray, cost: np.ndarray, usd: np.ndarray
) -> list[Point]:
    """One (mean cost, accuracy) point per cost weight, choosing by predicted quality."""
    rows = np.arange(len(p))
    points = []
    for weight in SWEEP:
        pick = choose_many(p, usd, float(weight))
        points.append((float(cost[rows, pick].mean()), float(correct[rows, pick].mean())))
    return points


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def out_of_fold(
    kind: str, params: dict[str, float], x: np.ndarray, y: np.ndarray, k: int
) -> np.ndarray:
    """Predictions for each training row from a model that did not see it."""
    p = np.zeros(y.shape, np.float64)
    for held in folds(len(x), k):
        keep = np.setdiff1d(np.arange(len(x)), held)
        p[held] = learners.make(kind, params).fit(x[keep], y[keep]).predict(x[held])
    return p


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    known = ~np.isnan(y)
    q = np.clip(p[known], 1e-4, 1 - 1e-4)
    t = y[known]
    return float(-(t * np.log(q) + (1 - t) * np.log(1 - q)).mean())


@dataclass
class Router(QualityPredictor):
    models: list[str]
    usd: np.ndarray  # expected cost per query of each model, from the training data
    template: Template
    encoder_name: str
    learner: learners.Learner
    cv: list[CVScore] = field(default_factory=list)
    _encoder: Encoder | None = None
    # The winner's out-of-fold predictions on the training rows (not saved): what a
    # cascade trained on top may trust the router's predictions to be worth.
    oof: np.ndarray | None = None

    # -- training -----------------------------------------------------------------

    @classmethod
    def train(
        cls,
        data: RoutingData,
        encoder: Encoder,
        k: int = 5,
        candidates: list[tuple[str, dict[str, float]]] | None = None,
        progress: Callable[[str], None] = lambda _: None,
    ) -> Router:
        if len(data) < 2 * k:
            raise InputError(f"{data.name}: {len(data)} rows; need at least {2 * k} to train")
        template = Template.learn(data.prompts)
        progress(f"embedding {len(data)} prompts with {encoder.name}")
        x = featurize(encoder, template, data.prompts)
        correct, cost = data.filled()
        usd = cost.mean(0)
        lo, hi = float(usd.min()), float(usd.max())
        scores, oof = [], []
        for kind, params in candidates or learners.CANDIDATES:
            oof.append(out_of_fold(kind, params, x, data.correct, k))
            hull = upper_hull(sweep_points(oof[-1], correct, cost, usd))
            scores.append(
                CVScore(kind, params, aiq(hull, lo, hi), _log_loss(oof[-1], data.correct))
            )
            progress(f"{kind} {params}: CV AIQ {scores[-1].aiq:.4f}")
        winner = max(
            range(len(scores)), key=lambda i: (round(scores[i].aiq, 4), -scores[i].log_loss)
        )
        best = scores[winner]
        learner = learners.make(best.kind, best.params).fit(x, data.correct)
        return cls(data.models, usd, template, encoder.name, learner, scores, encoder, oof[winner])

    # -- use ------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = make_encoder(self.encoder_name)
        return self._encoder

    def prepare(self) -> None:
        self.encoder.prepare()

    def predict(self, prompts: list[str]) -> np.ndarray:
        return self.learner.predict(featurize(self.encoder, self.template, prompts))

    # -- storage: one .npz, arrays plus a JSON header, loaded with allow_pickle=False ---

    def save(self, path: Path) -> None:
        meta: dict[str, Any] = {
            "format": FORMAT,
            "models": self.models,
            "usd": self.usd.tolist(),
            "template": {"prefix": self.template.prefix, "suffix": self.template.suffix},
            "encoder": self.encoder_name,
            "learner": {"kind": self.learner.kind, "params": self.learner.params},
            "cv": [s.__dict__ for s in self.cv],
        }
        write_arrays(path, {f"state.{k}": v for k, v in self.learner.state.items()}, meta)

    @classmethod
    def load(cls, path: Path) -> Router:
        arrays, meta = read_arrays(path, FORMAT, "train one with `tierwise router train`")
        state = {k.removeprefix("state."): v for k, v in arrays.items()}
        learner = learners.make(meta["learner"]["kind"], meta["learner"]["params"])
        learner.state = state
        return cls(
            meta["models"],
            np.array(meta["usd"]),
            Template(**meta["template"]),
            meta["encoder"],
            learner,
            [CVScore(**s) for s in meta["cv"]],
        )
