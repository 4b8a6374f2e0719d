"""One optimiser step, the same in every training loop tierwise runs."""

from __future__ import annotations

import torch


def descend(
    loss: torch.Tensor, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler
) -> float:
    """Back-propagate ``loss``, step the optimiser and the schedule; the loss as a float."""
    opt.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    opt.step()
    sched.step()
    return float(loss.detach())
