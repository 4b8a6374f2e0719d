"""A federated global model becomes a variant of cifar10-net that nodes can load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.synthetic_cifar import synthetic
from tierwise.federated.export_variant import export_fl_variant
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.fl_model import build_model, get_weights, to_tensor
from tierwise.models import cifar_input
from tierwise.models.onnx_variant import OnnxVariant
from tierwise.models.variant_file import find_variants


def test_exported_variant_matches_the_trained_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", 10).eval()
    weights = tmp_path / "run.weights.npz"
    np.savez(weights, **get_weights(model))
    report = {
        "settings": FLSettings(model="cnn").model_dump(),
        "weights_file": str(weights),
        "final_accuracy": 0.1,
        "up_bytes": 123,
    }
    images, labels = synthetic(64, seed=5)
    folder = export_fl_variant(report, tmp_path / "variants", "fl-test", images, labels, None)

    [(found, card)] = find_variants(tmp_path / "variants", "cifar10-net")
    assert found == folder and card.input_kind == "cifar"
    assert card.steps[0]["step"] == "federated" and card.steps[0]["uplink_bytes"] == 123
    assert 0.0 <= card.measured["accuracy"] <= 1.0 and card.measured["n"] == 64
    served = OnnxVariant("cifar10-net:fl-test", folder)
    got = served.run_stages(cifar_input.normalise(images[:8]), 0, 1)
    with torch.inference_mode():
        want = model(to_tensor(images[:8])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
