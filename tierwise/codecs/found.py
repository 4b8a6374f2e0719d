"""A model's codec files: those its spec lists, then those found in the spec's ``codecs_dir``.

`tierwise compress` and `tierwise assets` write codecs into one folder (``models/codecs``
by default) and, as with variants, a codec there is used without editing the spec. Each
file's header names the model it was made for, so only that model gets it. The gateway,
the nodes and the profiler all ask here, so they see the same codecs; a file both listed
and found counts once.
"""

from __future__ import annotations

from pathlib import Path

from tierwise.codecs.codec_file import read_header
from tierwise.config import ClusterSpec
from tierwise.errors import ConfigError, InputError
from tierwise.models.kinds import vision_kind


def found_codecs(folder: Path | None) -> dict[str, list[Path]]:
    """The codec files in ``folder`` by the model their header names (no folder: none).

    A file there that is not a readable codec is an error, not skipped: a codec silently
    missing from the plans would be harder to notice than a refusal to start."""
    if folder is None or not folder.is_dir():
        return {}
    by_model: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.npz")):
        try:
            header = read_header(path)
        except InputError as exc:
            raise ConfigError(f"codecs_dir: {exc}") from exc
        by_model.setdefault(header.model, []).append(path)
    return by_model


def listed_codecs(spec: ClusterSpec, name: str) -> list[Path]:
    """The codecs the spec lists for model ``name`` (``models.NAME.codecs``)."""
    kind = vision_kind(spec.models[name])
    return [] if kind is None else kind.codecs(spec.models[name])


def model_codecs(spec: ClusterSpec, name: str) -> list[Path]:
    """Every codec of model ``name``: the listed ones in order, then those found."""
    if vision_kind(spec.models[name]) is None:
        return []  # only staged models are split, so only they have feature codecs
    listed = listed_codecs(spec, name)
    seen = {path.resolve() for path in listed}
    found = found_codecs(spec.codecs_dir).get(name, [])
    return [*listed, *(path for path in found if path.resolve() not in seen)]


def codec_field(spec: ClusterSpec, name: str, index: int) -> str:
    """Where the ``index``-th of :func:`model_codecs` came from, for error messages."""
    if index < len(listed_codecs(spec, name)):
        return f"models.{name}.codecs[{index}]"
    return f"codecs_dir ({spec.codecs_dir})"
