"""One L2-regularised logistic regression per output column, fitted together.

Fitting uses torch's L-BFGS on the whole batch (a few hundred requests: seconds at most);
predicting is one matrix product in numpy, so a trained planner needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Logistic:
    weights: np.ndarray  # (features, outputs)
    bias: np.ndarray  # (outputs,)

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        l2: float,
        sample_weight: np.ndarray | None = None,
        iterations: int = 100,
    ) -> Logistic:
        """Minimise the summed cross-entropy plus ``l2`` times the squared weights (the
        bias is not penalised). Deterministic: the start is all zeros."""
        import torch

        threads = torch.get_num_threads()
        # Matrices this small fit faster on one thread than on two that contend (10x on
        # a busy 2-core machine).
        torch.set_num_threads(1)
        try:
            return cls._fit(torch, x, y, l2, sample_weight, iterations)
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def _fit(
        cls,
        torch: Any,
        x: np.ndarray,
        y: np.ndarray,
        l2: float,
        sample_weight: np.ndarray | None,
        iterations: int,
    ) -> Logistic:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        yt = torch.from_numpy(np.ascontiguousarray(y, np.float32))
        wt = torch.ones(len(y), 1)
        if sample_weight is not None:
            wt = torch.from_numpy(np.asarray(sample_weight, np.float32)).reshape(-1, 1)
        w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
        b = torch.zeros(y.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_grad=1e-6
        )

        def closure() -> Any:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                xt @ w + b, yt, reduction="none"
            )
            total = (loss * wt).sum() + l2 * (w * w).sum()
            total.backward()
            return total

        opt.step(closure)
        return cls(w.detach().numpy().copy(), b.detach().numpy().copy())

    def logits(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x @ self.weights + self.bias
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = 1.0 / (1.0 + np.exp(-self.logits(x)))
        return out
