"""The tables that pick a codec file's loader and a training backbone by name, the node's
check that its codecs belong to its models, and the import direction these keep."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic_cifar import synthetic_dataset
from tierwise.codecs.learned import BottleneckNet, save_codec
from tierwise.codecs.loaders import LOADERS
from tierwise.codecs.training.backbone_registry import BACKBONES, BackboneSource, open_backbone
from tierwise.config import ClusterSpec, default_spec
from tierwise.errors import ConfigError, InputError
from tierwise.runtime.model_codecs import load_model_codecs

PACKAGE = Path(__file__).resolve().parents[1] / "tierwise"


def _imports(path: Path) -> set[str]:
    """Every tierwise module ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("tierwise.")}


def test_models_never_import_codecs_and_the_codec_file_knows_no_kind() -> None:
    for path in (PACKAGE / "models").rglob("*.py"):
        codecs = {m for m in _imports(path) if m.startswith("tierwise.codecs")}
        assert not codecs, f"{path.name} imports {codecs}: codecs import models, not back"
    kinds = {"tierwise.codecs.learned", "tierwise.codecs.fitted", "tierwise.codecs.loaders"}
    assert not _imports(PACKAGE / "codecs" / "codec_file.py") & kinds


def test_the_tables_import_no_torch_until_used() -> None:
    code = (
        "import sys\n"
        "import tierwise.codecs.registry, tierwise.codecs.training.backbone_registry\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('tierwise.models')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert out.stdout.strip() == "[]"


def test_a_codec_file_kind_has_one_loader() -> None:
    assert sorted(LOADERS) == ["bottleneck", "fitted-quant"]


def test_a_backbone_is_made_by_name_and_an_unknown_name_lists_the_known() -> None:
    from tierwise.codecs.training.cifar_backbone import CifarBackbone
    from tierwise.codecs.training.lite_backbone import LiteBackbone

    data = synthetic_dataset(train=8, test=8)
    cifar = open_backbone("cifar-net", BackboneSource("net.npz", "tiny", data, False, 4))
    assert isinstance(cifar, CifarBackbone)
    assert (cifar.model_path, cifar.model_name, cifar.use_labels) == (
        Path("net.npz"),
        "tiny",
        False,
    )
    assert (cifar.train_images, cifar.test_images) == (4, None)
    lite = open_backbone("efficientnet-lite", BackboneSource("efficientnet-lite1", "l1", data))
    assert isinstance(lite, LiteBackbone)
    assert (lite.variant, lite.train_images, lite.test_images) == ("lite1", 5000, 1000)
    with pytest.raises(InputError, match=r"unknown backbone 'resnet'; backbones are \['cifar-net'"):
        open_backbone("resnet", BackboneSource("x", "x", data))
    with pytest.raises(InputError, match="learns from easy-vqa, not Cifar10"):
        open_backbone("vqa-net", BackboneSource("vqa.npz", "vqa-net", data))
    assert sorted(BACKBONES) == ["cifar-net", "efficientnet-lite", "vqa-net"]


def _spec_listing(name: str, codecs: list[Path]) -> ClusterSpec:
    """The default spec, hermetic, with model ``name`` (a Lite0) listing ``codecs``."""
    spec = default_spec().model_copy(update={"codecs_dir": None, "variants_dir": None})
    model = spec.models["efficientnet-lite0"].model_copy(update={"codecs": codecs})
    return spec.model_copy(update={"models": {**spec.models, name: model}})


def test_a_node_refuses_a_codec_made_for_another_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "ib-node-check.npz"
    header = {"name": "ib-node-check", "model": "other-net", "split": 2, "input_shape": [8, 4, 4]}
    save_codec(BottleneckNet(8, 2, 4, 1), header, path)
    with pytest.raises(ConfigError, match=r"models\.net\.codecs\[0\]: .* for model 'other-net'"):
        load_model_codecs(_spec_listing("net", [path]), "net")
    load_model_codecs(_spec_listing("other-net", [path]), "other-net")
    with pytest.raises(ConfigError, match=r"models\.other-net\.codecs\[1\]: "):
        load_model_codecs(_spec_listing("other-net", [path, tmp_path]), "other-net")
