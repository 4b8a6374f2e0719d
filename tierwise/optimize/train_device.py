"""Where training runs: checked before any work, so a typo or a missing GPU fails at once."""

from __future__ import annotations

import re
from typing import Literal

from tierwise.errors import InputError

#: fp32, or bf16 autocast for forward passes (see TrainConfig.precision)
Precision = Literal["fp32", "bf16"]

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str, field: str = "--device") -> None:
    """Raise unless ``device`` is ``cpu`` or a CUDA device torch can see."""
    if not _DEVICE.match(device):
        raise InputError(f"{field}: expected cpu, cuda or cuda:N, got {device!r}")
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            f"{field}: {device} was asked for, but torch {torch.__version__} sees no CUDA GPU "
            "(the CPU build installed by `make install` has none); use --device cpu"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise InputError(
            f"{field}: {device} was asked for, but torch sees {torch.cuda.device_count()} GPU(s)"
        )
