"""A stage of a torch network as a module of its own, so stages compose with ``[a:b]``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class StageModule(nn.Module):
    """Runs ``forward(net, x)``, one stage of ``net``. Holding ``net`` as a submodule lets
    train/eval reach it, and lets a deep copy of the stages share one copied network."""

    def __init__(
        self, net: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    ) -> None:
        super().__init__()
        self.net = net
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.net, x)
