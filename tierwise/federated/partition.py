"""Splitting a labelled training set across federated clients: IID or Dirichlet label skew.

Every client computes its own share from the same seed, so no index list is ever sent.
Dirichlet(α) gives each class a random split across clients; small α concentrates each
class on a few clients (α = 0.5 is the usual "non-IID" setting of the Flower baselines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_DIRICHLET = re.compile(r"^dirichlet:(?P<alpha>[0-9.eE+-]+)$")


@dataclass(frozen=True)
class PartitionSpec:
    kind: str  # "iid" or "dirichlet"
    alpha: float = 0.0

    @property
    def name(self) -> str:
        return "iid" if self.kind == "iid" else f"dirichlet:{self.alpha:g}"

    @classmethod
    def parse(cls, text: str) -> PartitionSpec:
        text = text.strip().lower()
        if text == "iid":
            return cls("iid")
        match = _DIRICHLET.match(text)
        if match is None:
            raise ValueError(f"partition: {text!r} is not iid or dirichlet:ALPHA")
        alpha = float(match["alpha"])
        if alpha <= 0:
            raise ValueError(f"partition: Dirichlet alpha must be > 0, got {alpha:g}")
        return cls("dirichlet", alpha)


def partition_indices(
    labels: np.ndarray, clients: int, spec: PartitionSpec, seed: int
) -> list[np.ndarray]:
    """The training-set indices each client holds; every index goes to exactly one client."""
    if clients < 1:
        raise ValueError(f"clients: need at least 1, got {clients}")
    if len(labels) < clients:
        raise ValueError(
            f"{len(labels)} training examples cannot be split across {clients} clients"
        )
    rng = np.random.default_rng(seed)
    if spec.kind == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), clients)]
    return _dirichlet(labels, clients, spec.alpha, rng)


def _dirichlet(
    labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    # Redraw until every client has at least a handful of examples: a client with none
    # would sit out every round, which is not what a label-skew experiment means.
    minimum = min(10, len(labels) // clients)
    for _ in range(100):
        shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            weights = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(weights)[:-1] * len(members)).astype(int)
            for client, part in enumerate(np.split(members, cuts)):
                shares[client].append(part)
        parts = [np.sort(np.concatenate(s)) for s in shares]
        if min(len(p) for p in parts) >= minimum:
            return parts
    raise ValueError(
        f"partition: could not give each of {clients} clients {minimum} examples with "
        f"Dirichlet alpha {alpha:g}; use a larger alpha or fewer clients"
    )
