"""A voting cascade, replayed from stored answers: ask a few models together and answer
with their majority when enough of them agree; otherwise ask more, and as a last resort
one strong model.

This uses the one signal that prompt features lack: whether independent answers agree.
On ARC's training split, Yi-34B and Mixtral agree on 86% of prompts and are right on 94%
of those. That is close to GPT-4's 95% but not above it, so trusting their agreement
saves money only a little short of GPT-4's accuracy.

The policies are searched on the training split only. A search tries every first stage
of two or three models (or one model alone), an optional second stage of up to two
more, a quorum, and a last word: the training split's best model, or none, in which case
the last vote stands. The policies on the training frontier are then replayed on the
test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from tierwise.errors import ConfigError
from tierwise.routing.answers import answer_key
from tierwise.routing.metrics import Point
from tierwise.routing.replay import curves

QUORUMS = (0.6, 0.75, 1.0)  # share of the answers so far that must name the winner
POOL_SIZE = 8  # models stages are drawn from: bounds the search (about 9,000 policies)


@dataclass(frozen=True)
class Stage:
    models: tuple[int, ...]  # model columns asked together
    agree: int  # answers so far that must name the winner to stop here; 0: always stop


@dataclass(frozen=True)
class VoteCascade:
    stages: tuple[Stage, ...]
    final: int | None  # asked when no stage stops; None: the last stage always stops

    def __post_init__(self) -> None:
        asked = [j for stage in self.stages for j in stage.models]
        if not self.stages or any(not stage.models for stage in self.stages):
            raise ConfigError(
                "vote cascade stages: need at least one stage, each of at least one model",
                param="stages",
            )
        if len(set(asked)) != len(asked) or self.final in asked:
            raise ConfigError(
                f"vote cascade stages/final: a model is asked twice in {self.stages} → "
                f"{self.final}; each model may be asked once",
                param="stages",
            )
        for k, stage in enumerate(self.stages):
            asked_so_far = sum(len(s.models) for s in self.stages[: k + 1])
            if stage.agree > asked_so_far:
                raise ConfigError(
                    f"vote cascade stages[{k}].agree: {stage.agree} needs more agreeing answers "
                    f"than it has asked; valid values are 0 to {asked_so_far}",
                    param="agree",
                )

    def replay(
        self, keys: np.ndarray, correct: np.ndarray, cost: np.ndarray, rank: np.ndarray
    ) -> Point:
        """Mean cost and accuracy; ``rank`` orders models best first, to break ties."""
        n = len(keys)
        rows = np.arange(n)
        done = np.zeros(n, bool)
        right = np.zeros(n)
        paid = np.zeros(n)
        asked: list[int] = []
        for k, stage in enumerate(self.stages):
            asked += stage.models
            paid += np.where(done, 0.0, cost[:, list(stage.models)].sum(1))
            winner, votes = majority(keys, asked, rank)
            last_word = self.final is None and k == len(self.stages) - 1
            stop = ~done & ((votes >= stage.agree) | last_word)
            right[stop] = correct[rows, winner][stop]
            done |= stop
        if self.final is not None:
            paid += np.where(done, 0.0, cost[:, self.final])
            right[~done] = correct[~done, self.final]
        return float(paid.mean()), float(right.mean())

    def describe(self, models: list[str]) -> str:
        def short(j: int) -> str:
            return models[j].split("/")[-1]

        if len(self.stages) == 1 and len(self.stages[0].models) == 1 and self.final is None:
            return f"{short(self.stages[0].models[0])} alone"
        parts, asked = [], 0
        for k, stage in enumerate(self.stages):
            asked += len(stage.models)
            names = " + ".join(short(j) for j in stage.models)
            last_word = self.final is None and k == len(self.stages) - 1
            rule = "majority" if last_word else f"{stage.agree} of {asked} agree"
            parts.append(f"{'+ ' if k else ''}{names} ({rule})")
        last = f" → {short(self.final)}" if self.final is not None else ""
        return " → ".join(parts) + last


def majority(keys: np.ndarray, asked: list[int], rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the column whose answer most of ``asked`` gave, and how many gave it.

    Empty answers (negative keys) never win a vote; ties go to the better-ranked model.
    """
    sub = keys[:, asked]
    votes = (sub[:, :, None] == sub[:, None, :]).sum(2) * (sub >= 0)
    position = np.argsort(rank)[asked]  # where each asked model stands; 0 is the best
    score = votes * (len(rank) + 1) - position[None, :]
    best = score.argmax(1)
    rows = np.arange(len(keys))
    return np.array(asked)[best], votes[rows, best]


def key_matrix(responses: list[list[str]]) -> np.ndarray:
    """Answer keys as integers per row (equal answers, equal ints; empty answers never)."""
    out = np.zeros((len(responses), len(responses[0]) if responses else 0), np.int64)
    for i, row in enumerate(responses):
        ids: dict[str, int] = {}
        for j, text in enumerate(row):
            key = answer_key(text)
            out[i, j] = ids.setdefault(key, len(ids)) if key else -(j + 1)
    return out


def search(keys: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> list[VoteCascade]:
    """Every policy in the search space scored on the data given (the training split);
    those on its cost–accuracy frontier are returned, cheapest first."""
    rank = _rank(correct, cost)
    best = int(rank[0])
    pool = _pool(rank, correct, cost)
    policies = {VoteCascade((Stage((j,), 0),), None) for j in [*pool, best]}  # models alone
    for first in _sets(pool, (2, 3)):
        rest = [j for j in pool if j not in first]
        for second in [(), *_sets(rest, (1, 2))]:
            groups = (first, second) if second else (first,)
            for quorum in QUORUMS:
                for final in (best, None):
                    policies.add(VoteCascade(_stages(groups, quorum), final))
    scored = sorted(
        ((policy.replay(keys, correct, cost, rank), policy) for policy in policies),
        key=lambda s: (s[0][0], -s[0][1], repr(s[1])),
    )
    front, top = [], -1.0
    for (_, acc), policy in scored:
        if acc > top:
            front.append(policy)
            top = acc
    return front


def _stages(groups: tuple[tuple[int, ...], ...], quorum: float) -> tuple[Stage, ...]:
    """Stages whose stopping rule is the quorum as a count of the answers asked so far."""
    stages, asked = [], 0
    for group in groups:
        asked += len(group)
        stages.append(Stage(group, math.ceil(quorum * asked - 1e-9)))
    return tuple(stages)


def _pool(rank: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> list[int]:
    """Up to POOL_SIZE models cheaper than the best: the train frontier first (spread
    evenly along it if it is longer), then the most accurate of the others."""
    usd = cost.mean(0)
    cheaper = [int(j) for j in rank if usd[j] < usd[int(rank[0])]]
    points = {str(j): (float(usd[j]), float(correct[:, j].mean())) for j in cheaper}
    front = [int(j) for j in curves.frontier(points).models]
    if len(front) > POOL_SIZE:
        front = [front[i] for i in np.linspace(0, len(front) - 1, POOL_SIZE).round().astype(int)]
    return front + [j for j in cheaper if j not in front][: POOL_SIZE - len(front)]


def _rank(correct: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Model columns, most accurate first (cheaper first among equals)."""
    return np.lexsort((cost.mean(0), -correct.mean(0)))


def _sets(pool: list[int], sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [s for size in sizes for s in combinations(pool, size)]


def replay_front(
    front: list[VoteCascade],
    train_correct: np.ndarray,
    train_cost: np.ndarray,
    keys: np.ndarray,
    correct: np.ndarray,
    cost: np.ndarray,
) -> list[Point]:
    """The training frontier's policies on other data, ties broken by the training rank."""
    rank = _rank(train_correct, train_cost)
    return [policy.replay(keys, correct, cost, rank) for policy in front]
