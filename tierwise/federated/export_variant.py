"""A federated run's global model as a model variant nodes serve and the planner places.

The variant takes what our CIFAR-10 network takes (standardised 32×32 images), so it is
written as a variant of ``cifar10-net``: any node hosting that model also serves this
one as ``cifar10-net:<name>``, with no spec edit. For the ``head`` model the one ONNX
stage holds the whole path (upscale, frozen EfficientNet-Lite0, the federated head).
Its card records the run that made it and what it measured on CIFAR-10 test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.federated.fl_model import build_model
from tierwise.models import cifar_input
from tierwise.models.variant_file import StageFile, VariantCard, write_variant

BASE = "cifar10-net"


class ServedModel(nn.Module):
    """Standardised CIFAR input → logits, the way the federated clients saw it."""

    def __init__(self, kind: str, head: nn.Module, image_size: int) -> None:
        super().__init__()
        self.kind, self.head, self.image_size = kind, head, image_size
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.from_numpy(cifar_input.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(cifar_input.STD).view(1, 3, 1, 1))
        if kind == "head":
            from tierwise.models.efficientnet_lite import EfficientNetLite

            lite = EfficientNetLite("efficientnet-lite0", "lite0")
            self.backbone = lite.trunk()

    def forward(self, x: torch.Tensor) -> Any:
        pixels = (x * self.std + self.mean) * 255.0
        if self.kind == "cnn":
            return self.head((pixels - 127.5) / 127.5)  # as fl_model.to_tensor feeds it
        from tierwise.models.efficientnet_lite import normalize_pixels

        big = nn.functional.interpolate(
            pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return self.head(self.backbone(normalize_pixels(big)))


def export_fl_variant(
    report: dict[str, Any],
    root: Path,
    name: str,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    base_net: Path | None,
) -> Path:
    """Write the variant; ``test_images`` are uint8 NHWC CIFAR-10 test images."""
    from tierwise.optimize.onnx_export import check_export, export_stages, run_graphs

    settings = report["settings"]
    head = build_model(settings["model"], 10)
    with np.load(report["weights_file"], allow_pickle=False) as weights:
        head.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    served = nn.Sequential(ServedModel(settings["model"], head, settings["image_size"])).eval()
    graphs = export_stages(served, (3, 32, 32))
    x = cifar_input.normalise(test_images)
    check_export(served, graphs, x[:16])
    predicted = run_graphs(graphs, x, batch=200).argmax(1)
    measured = {"accuracy": float((predicted == test_labels).mean()), "n": float(len(x))}
    if base_net is not None and base_net.is_file():
        from tierwise.models.cifar_net import load

        net, _ = load(base_net)
        with torch.inference_mode():
            chunks = [net(torch.from_numpy(x[i : i + 500])) for i in range(0, len(x), 500)]
            reference = np.concatenate([c.argmax(1).numpy() for c in chunks])
        measured["agreement"] = float((predicted == reference).mean())
        measured["reference_accuracy"] = float((reference == test_labels).mean())
    params = sum(p.numel() for p in served.parameters())
    measured["params"] = float(params)
    step = {
        "step": "federated",
        "strategy": settings["strategy"],
        "partition": settings["partition"],
        "compress": settings["compress"],
        "clients": settings["clients"],
        "rounds": settings["rounds"],
        "final_accuracy": report["final_accuracy"],
        "uplink_bytes": report["up_bytes"],
    }
    card = VariantCard(
        name=name,
        base=BASE,
        input_kind="cifar",
        image_size=32,
        stages=[StageFile("fl-global", (3, 32, 32), (10,), params, "")],
        steps=[step],
        measured=measured,
    )
    return write_variant(root, card, graphs)
