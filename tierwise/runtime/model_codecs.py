"""A node's trained codecs, registered in its process so that their messages decode.

Each codec file a staged model lists (``models.NAME.codecs``) is loaded once the node's
models are, and must have been made for that model.
"""

from __future__ import annotations

from pathlib import Path

from tierwise.codecs.registry import load_codec_file
from tierwise.config import ClusterSpec, NodeSpec
from tierwise.errors import ConfigError, InputError
from tierwise.models.kinds import vision_kind


def load_node_codecs(spec: ClusterSpec, node: NodeSpec) -> None:
    """Register the codecs of every staged model ``node`` hosts."""
    for name in node.models:
        kind = vision_kind(spec.models[name])
        if kind is not None:
            load_model_codecs(name, kind.codecs(spec.models[name]))


def load_model_codecs(name: str, codecs: list[Path]) -> None:
    """Register the model's learned codecs in this process, checking each belongs to it."""
    for i, path in enumerate(codecs):
        try:
            codec = load_codec_file(path)
        except InputError as exc:
            raise ConfigError(f"models.{name}.codecs[{i}]: {exc}") from exc
        owner = getattr(codec, "model", None)
        if owner != name:
            raise ConfigError(
                f"models.{name}.codecs[{i}]: {path} was trained for model {owner!r}, not {name!r}"
            )
