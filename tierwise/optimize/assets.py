"""`tierwise assets`: the codec and the variant the demo and the placement bench rely on.

A fresh clone has neither, and no CIFAR-10 to make them the way `tierwise compress fit`
and `tierwise optimize` do by default. Both are made here from the photos that ship in
installed packages instead (:func:`tierwise.datasets.photos.photo_split`): fitted or
calibrated on one part, measured on the other, and their cards say so. Each is made
only if it is missing or does not read back; the fitted codec takes seconds, the int8
variant about a minute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tierwise.codecs.codec_file import read_header
from tierwise.errors import InputError
from tierwise.models.variant_file import find_variants, size_on_disk
from tierwise.optimize.optimize_job import HeldOut, OptimizeOptions, Step, run_optimize

MODEL, VARIANT, SPLIT, BITS = "efficientnet-lite0", "lite0", 6, 7
CODEC_NAME = f"{MODEL}-s{SPLIT}-q{BITS}"
VARIANT_NAME = "int8"  # what `tierwise optimize --quantize int8` names it
HELD_OUT_EVERY = 2  # every second original photo is held out, with its views


@dataclass(frozen=True)
class Asset:
    """One file or folder `tierwise assets` looked for, and what it found or made."""

    what: Literal["codec", "variant"]
    name: str
    path: Path
    status: Literal["built", "found"]
    bytes: int
    seconds: float  # to build it now (0 when found)
    agreement: float | None  # top-1 agreement with the unsplit fp32 model, from its card
    measured_on: str
    card: str  # the card's other headline: a codec's bytes per image, a variant's size


def build_assets(out_dir: Path, force: bool = False, step: Step = lambda *_: None) -> list[Asset]:
    """The fitted codec under ``out_dir/codecs`` and the int8 variant under
    ``out_dir/variants``, each made unless it is there and reads back (``force``: always)."""
    check_out_dir(out_dir)
    return [codec_asset(out_dir / "codecs", force, step), variant_asset(out_dir, force, step)]


def check_out_dir(out_dir: Path) -> None:
    """A clear error now rather than a traceback after a minute of work."""
    for folder in (out_dir, out_dir / "codecs", out_dir / "variants"):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--out-dir: {folder} exists and is not a folder")
    try:
        (out_dir / "codecs").mkdir(parents=True, exist_ok=True)
        (out_dir / "variants").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out-dir: cannot make folders under {out_dir} ({exc})") from exc


def codec_asset(folder: Path, force: bool = False, step: Step = lambda *_: None) -> Asset:
    """The 7-bit fitted codec of Lite0's pooled embedding (split 6), fitted on photos."""
    from tierwise.codecs.training.photo_backbone import LitePhotoBackbone

    path = folder / f"{CODEC_NAME}.npz"
    if not force and _codec_reads_back(path):
        return _codec_found(path, "found", 0.0)
    started = time.perf_counter()
    backbone = LitePhotoBackbone(MODEL, VARIANT, HELD_OUT_EVERY)
    (codec,) = backbone.fit(SPLIT, ((BITS, CODEC_NAME),), step)
    codec.save(path)
    return _codec_found(path, "built", time.perf_counter() - started)


def _codec_reads_back(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        header = read_header(path)
    except InputError:
        return False
    return (header.name, header.model, header.split) == (CODEC_NAME, MODEL, SPLIT)


def _codec_found(path: Path, status: Literal["built", "found"], seconds: float) -> Asset:
    header = read_header(path)
    measured_on = str(header.card.get("measured_on", ""))
    size = path.stat().st_size
    agreement = header.measured("agreement")
    wire = header.measured("wire_bytes")
    card = "" if wire is None else f"{wire:.0f} B/image"
    return Asset("codec", header.name, path, status, size, seconds, agreement, measured_on, card)


def variant_asset(out_dir: Path, force: bool = False, step: Step = lambda *_: None) -> Asset:
    """Lite0 in static int8, calibrated on packaged photos and measured on held-out ones."""
    variants = out_dir / "variants"
    if not force and (found := _variant_found(variants, "found", 0.0)) is not None:
        return found
    started = time.perf_counter()
    _make_variant(variants, step)
    made = _variant_found(variants, "built", time.perf_counter() - started)
    if made is None:  # run_optimize writes the folder or raises; this is a broken promise
        raise InputError(f"{variants}: the int8 variant was written but does not read back")
    return made


def _variant_found(
    variants: Path, status: Literal["built", "found"], seconds: float
) -> Asset | None:
    try:
        found = dict((card.name, (folder, card)) for folder, card in find_variants(variants, MODEL))
    except InputError:
        return None  # a broken card: make it again
    if VARIANT_NAME not in found:
        return None
    folder, card = found[VARIANT_NAME]
    if not all((folder / f"stage{i}.onnx").is_file() for i in range(len(card.stages))):
        return None
    agreement = card.measured.get("agreement")
    params = card.measured.get("params")
    about = "" if params is None else f"{params / 1e6:.1f}M params"
    name = f"{MODEL}:{VARIANT_NAME}"
    size = size_on_disk(folder)
    return Asset("variant", name, folder, status, size, seconds, agreement, card.measured_on, about)


def _make_variant(variants: Path, step: Step) -> None:
    from tierwise.datasets.photos import more_views, photo_split
    from tierwise.optimize.sources import load_source

    source = load_source(MODEL)
    fit, held = photo_split(HELD_OUT_EVERY)
    calibration = np.concatenate([source.preprocess(image) for _, image in fit + more_views(fit)])
    held_x = np.concatenate([source.preprocess(image) for _, image in held])
    described = (
        f"{len(held)} packaged photos (scikit-image, matplotlib; with mirrors and crops) held "
        f"out from calibration, which used {len(calibration)} views of the others (made "
        "without CIFAR-10, which a fresh machine lacks)"
    )
    options = OptimizeOptions(name=VARIANT_NAME, quantize="static")
    run_optimize(
        source, options, variants, [HeldOut(described, held_x)], None, calibration, None, step
    )
