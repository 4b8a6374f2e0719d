"""An optimized model variant on disk: one ONNX graph per stage plus a JSON card.

A variant is a folder ``<root>/<base>/<name>/`` holding ``variant.json`` and
``stage<i>.onnx`` (one folder per base model, so ``int8`` of two models never collide).
The card names the model it was made from (``base``), how its input is prepared, each
stage's shapes and file digest, the steps that made it, and what was measured on
held-out data. It is readable without torch or ONNX Runtime, so a gateway can plan with it.

Writes go to a hidden sibling folder that is renamed into place at the end, so a
failed step never leaves a half-written variant where nodes look for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tierwise.errors import InputError

FORMAT = "tierwise-variant/1"
CARD = "variant.json"
InputKind = Literal["efficientnet", "cifar"]


@dataclass(frozen=True)
class StageFile:
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    sha256: str = ""


@dataclass(frozen=True)
class VariantCard:
    name: str
    base: str
    input_kind: InputKind
    image_size: int
    stages: list[StageFile]
    steps: list[dict[str, Any]] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)
    #: what ``measured`` (its unprefixed keys) was measured on
    measured_on: str = ""

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["format"] = FORMAT
        return body


def write_variant(root: Path, card: VariantCard, stages: list[bytes]) -> Path:
    """Write the variant atomically; returns its folder. Replaces an older one of that name."""
    if len(stages) != len(card.stages):
        raise ValueError(f"{len(stages)} stage graphs for {len(card.stages)} stages")
    folder = root / card.base
    final = folder / card.name
    staging = folder / f".{card.name}.writing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    described = []
    for i, (info, graph) in enumerate(zip(card.stages, stages, strict=True)):
        (staging / f"stage{i}.onnx").write_bytes(graph)
        described.append(
            StageFile(
                info.name,
                info.input_shape,
                info.output_shape,
                info.params,
                hashlib.sha256(graph).hexdigest(),
            )
        )
    full = VariantCard(**{**card.__dict__, "stages": described})
    (staging / CARD).write_text(json.dumps(full.to_json(), indent=2) + "\n")
    retired = folder / f".{card.name}.retired-{os.getpid()}"
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
    return final


def read_card(folder: Path) -> VariantCard:
    """The card of the variant in ``folder``; a clear error if it is not one."""
    path = folder / CARD
    if not path.is_file():
        raise InputError(
            f"{folder}: not a model variant (no {CARD}); make one with `tierwise optimize`"
        )
    try:
        body = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable variant card ({exc})") from exc
    if body.get("format") != FORMAT:
        raise InputError(f"{path}: format {body.get('format')!r}, expected {FORMAT!r}")
    try:
        stages = [
            StageFile(
                str(s["name"]),
                tuple(int(d) for d in s["input_shape"]),
                tuple(int(d) for d in s["output_shape"]),
                int(s["params"]),
                str(s.get("sha256", "")),
            )
            for s in body["stages"]
        ]
        return VariantCard(
            name=str(body["name"]),
            base=str(body["base"]),
            input_kind=body["input_kind"],
            image_size=int(body["image_size"]),
            stages=stages,
            steps=list(body.get("steps") or []),
            measured={k: float(v) for k, v in (body.get("measured") or {}).items()},
            measured_on=str(body.get("measured_on") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: variant card is missing or has a bad field ({exc})") from exc


def find_variants(root: Path, base: str) -> list[tuple[Path, VariantCard]]:
    """Every complete variant under ``root`` made from model ``base``, by name.

    Folders being written (hidden) and folders without a card are not variants."""
    if not (root / base).is_dir():
        return []
    found = []
    for folder in sorted((root / base).iterdir()):
        if folder.name.startswith(".") or not (folder / CARD).is_file():
            continue
        card = read_card(folder)
        if card.base == base:
            found.append((folder, card))
    return found


def size_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("stage*.onnx"))


def served_name(card: VariantCard) -> str:
    """The name nodes serve a variant under: ``<base>:<variant>``, like an image tag."""
    return f"{card.base}:{card.name}"
