"""A node's trained codecs, registered in its process so that their messages decode.

Each codec of a staged model (those ``models.NAME.codecs`` lists, and those found in
``codecs_dir``, see :mod:`tierwise.codecs.found`) is loaded once the node's models are,
and must have been made for that model.
"""

from __future__ import annotations

from tierwise.codecs.found import codec_field, model_codecs
from tierwise.codecs.registry import load_codec_file
from tierwise.config import ClusterSpec, NodeSpec
from tierwise.errors import ConfigError, InputError


def load_node_codecs(spec: ClusterSpec, node: NodeSpec) -> None:
    """Register the codecs of every staged model ``node`` hosts."""
    for name in node.models:
        load_model_codecs(spec, name)


def load_model_codecs(spec: ClusterSpec, name: str) -> None:
    """Register the model's learned codecs in this process, checking each belongs to it."""
    for i, path in enumerate(model_codecs(spec, name)):
        try:
            codec = load_codec_file(path)
        except InputError as exc:
            raise ConfigError(f"{codec_field(spec, name, i)}: {exc}") from exc
        owner = getattr(codec, "model", None)
        if owner != name:
            raise ConfigError(
                f"{codec_field(spec, name, i)}: {path} was trained for model {owner!r}, "
                f"not {name!r}"
            )
