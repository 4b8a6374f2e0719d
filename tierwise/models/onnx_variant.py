"""A model variant from `tierwise optimize`, served stage by stage with ONNX Runtime."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tierwise.errors import InputError, ModelError
from tierwise.models import cifar_input
from tierwise.models.base import StagedModel, StageInfo
from tierwise.models.variant_file import VariantCard, read_card
from tierwise.optional import require


def onnxruntime() -> Any:
    return require("onnxruntime", "onnxruntime", "optimized (ONNX) model variants")


def session(graph: bytes | Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session; ``threads`` 0 lets ONNX Runtime choose."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # A variant is a chain of sessions, one per stage, each with its own thread pool;
    # spinning pools would fight each other for the cores between stages.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    source = str(graph) if isinstance(graph, Path) else graph
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxVariant(StagedModel):
    """The stages of a variant folder; each stage is its own ONNX Runtime session."""

    def __init__(self, name: str, folder: Path, threads: int = 0) -> None:
        self.name = name
        self.folder = folder
        self.card: VariantCard = read_card(folder)
        self.stages = [
            StageInfo(i, s.name, s.input_shape, s.output_shape, s.params)
            for i, s in enumerate(self.card.stages)
        ]
        self._sessions = [self._load(i, threads) for i in range(len(self.stages))]
        self._lock = threading.Lock()

    def _load(self, index: int, threads: int) -> Any:
        path = self.folder / f"stage{index}.onnx"
        if not path.is_file():
            raise InputError(f"{self.folder}: stage file {path.name} is missing")
        graph = path.read_bytes()
        expected = self.card.stages[index].sha256
        if expected and hashlib.sha256(graph).hexdigest() != expected:
            raise InputError(f"{path}: contents do not match the digest in the variant card")
        return session(graph, threads)

    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        if not 0 <= start < end <= len(self.stages):
            raise ModelError(f"stage range [{start}, {end}) is outside 0..{len(self.stages)}")
        out = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            for index in range(start, end):
                out = self._sessions[index].run(None, {"x": out})[0]
        return out

    def preprocess(self, image: Image.Image) -> np.ndarray:
        if self.card.input_kind == "cifar":
            return cifar_input.preprocess_image(image)
        from tierwise.models.efficientnet_lite import preprocess_image

        return preprocess_image(image, self.card.image_size)

    def labels(self) -> list[str]:
        if self.card.input_kind == "cifar":
            return cifar_input.labels()
        from tierwise.models.efficientnet_lite import imagenet_labels

        return imagenet_labels()
