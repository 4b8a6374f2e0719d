"""Learners that predict, from prompt features, how likely each model answers correctly.

Each learner maps features (n, d) to probabilities (n, m), one column per model, and is
trained on labels that may be missing (NaN). All are small torch or numpy models whose
state is a dict of arrays, so a trained router is saved as ``.npz`` + JSON: no pickle.

- ``prior``: each model's training accuracy, whatever the prompt (the reference);
- ``logistic``: one L2-regularised logistic regression per model (a shared linear layer);
- ``mlp``: one hidden layer shared by all models, one output per model;
- ``mf``: matrix factorisation as in RouteLLM: a learned vector per model, dotted with a
  projection of the prompt;
- ``knn``: the mean correctness of the k most similar training prompts (the baseline the
  RouterBench paper found weak).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierwise.errors import InputError


@dataclass
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls(x.mean(0), x.std(0) + 1e-6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - self.mean) / self.scale).astype(np.float32)
        return out


def _masked_bce(logits: Any, y: Any, mask: Any) -> Any:
    import torch

    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any, Any]:
    import torch

    mask = ~np.isnan(y)
    return (
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(np.nan_to_num(y, nan=0.0).astype(np.float32)),
        torch.from_numpy(mask.astype(np.float32)),
    )


@dataclass
class Learner:
    """Base: a named learner with hyper-parameters and, once fitted, a state of arrays."""

    kind: str = ""
    params: dict[str, float] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Learner:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Prior(Learner):
    def fit(self, x: np.ndarray, y: np.ndarray) -> Learner:
        self.state = {"p": np.nanmean(y, axis=0)}
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.repeat(self.state["p"][None, :], len(x), axis=0)


class _TorchLearner(Learner):
    """Shared training loop: standardise, full-batch Adam on masked BCE, seed fixed."""

    def _net(self, d: int, m: int) -> Any:
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: np.ndarray) -> Learner:
        import torch

        torch.manual_seed(0)
        std = Standardizer.fit(x)
        xt, yt, mt = _tensors(std(x), y)
        net = self._net(x.shape[1], y.shape[1])
        opt = torch.optim.Adam(
            net.parameters(),
            lr=self.params.get("lr", 0.01),
            weight_decay=self.params.get("l2", 1e-3),
        )
        net.train()
        for _ in range(int(self.params.get("epochs", 200))):
            opt.zero_grad()
            loss = _masked_bce(net(xt), yt, mt)
            loss.backward()
            opt.step()
        self.state = {"mean": std.mean, "scale": std.scale}
        self.state.update({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        net = self._net(x.shape[1], self._outputs())
        net.load_state_dict(
            {k: torch.from_numpy(v) for k, v in self.state.items() if k not in ("mean", "scale")}
        )
        net.eval()
        std = Standardizer(self.state["mean"], self.state["scale"])
        with torch.inference_mode():
            return torch.sigmoid(net(torch.from_numpy(std(x)))).numpy()

    def _outputs(self) -> int:
        raise NotImplementedError


class Logistic(_TorchLearner):
    def _net(self, d: int, m: int) -> Any:
        import torch

        return torch.nn.Linear(d, m)

    def _outputs(self) -> int:
        return int(self.state["bias"].shape[0])


class MLP(_TorchLearner):
    def _net(self, d: int, m: int) -> Any:
        import torch

        hidden = int(self.params.get("hidden", 64))
        return torch.nn.Sequential(
            torch.nn.Linear(d, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, m),
        )

    def _outputs(self) -> int:
        return int(self.state["3.bias"].shape[0])


class _Factorized:
    """logit[i, m] = <W x_i, v_m> + b_m: prompts and models meet in a small shared space."""

    def __new__(cls, d: int, m: int, rank: int) -> Any:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.proj = torch.nn.Linear(d, rank, bias=False)
                self.models = torch.nn.Parameter(torch.randn(m, rank) * 0.1)
                self.bias = torch.nn.Parameter(torch.zeros(m))

            def forward(self, x: Any) -> Any:
                return self.proj(x) @ self.models.T + self.bias

        return Net()


class MatrixFactorization(_TorchLearner):
    def _net(self, d: int, m: int) -> Any:
        return _Factorized(d, m, int(self.params.get("rank", 16)))

    def _outputs(self) -> int:
        return int(self.state["bias"].shape[0])


class KNN(Learner):
    """Cosine neighbours on the embedding part; labels smoothed toward the model's mean."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Learner:
        dim = int(self.params.get("dim") or x.shape[1])
        self.state = {
            "x": x[:, :dim].astype(np.float32),
            "y": y.astype(np.float32),
            "prior": np.nanmean(y, axis=0),
        }
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        k = int(self.params.get("k", 20))
        train, labels, prior = self.state["x"], self.state["y"], self.state["prior"]
        sims = x[:, : train.shape[1]] @ train.T
        top = np.argsort(-sims, axis=1)[:, :k]
        near = labels[top]  # (n, k, m)
        known = ~np.isnan(near)
        total = np.nansum(near, axis=1) + prior[None, :]  # one pseudo-count of the prior
        p: np.ndarray = total / (known.sum(1) + 1)
        return p


LEARNERS: dict[str, type[Learner]] = {
    "prior": Prior,
    "logistic": Logistic,
    "mlp": MLP,
    "mf": MatrixFactorization,
    "knn": KNN,
}

# The grid tried by cross-validation: small on purpose (1,000 prompts do not support more).
CANDIDATES: list[tuple[str, dict[str, float]]] = [
    ("prior", {}),
    ("logistic", {"l2": 0.1, "epochs": 150}),
    ("logistic", {"l2": 1.0, "epochs": 150}),
    ("mlp", {"l2": 0.01, "hidden": 64, "epochs": 150}),
    ("mf", {"l2": 0.01, "rank": 16, "epochs": 200}),
    ("knn", {"k": 20, "dim": 384}),
]


def make(kind: str, params: dict[str, float]) -> Learner:
    if kind not in LEARNERS:
        raise InputError(
            f"unknown learner {kind!r}; expected one of {sorted(LEARNERS)}",
            param="learner",
        )
    return LEARNERS[kind](kind=kind, params=dict(params))
