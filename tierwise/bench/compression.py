"""``tierwise bench compression``: bytes per image against quality, for every way to send.

Three tasks, each sending what one request would send, one image per wire message:

- **CIFAR-10** with our own network: accuracy on the test images;
- **EfficientNet-Lite0 at 224×224**: top-1 agreement with the unsplit network on
  CIFAR-10 test images upscaled to 224×224 (no ImageNet labels here); the cards of its
  learned codecs add agreement on real photos;
- **easy-vqa** with our own VQA network: accuracy over the test questions, where the
  image (or its features) is compressed and the question goes along as text.

The methods are **input** codecs (split 0: PNG, JPEG and WebP at several qualities; the
receiver runs the whole network), **uniform** per-channel 8/4/2-bit feature codecs
(alone and with zstd; at every split for CIFAR-10, at the learned codecs' splits for
Lite0), **learned** bottlenecks from ``tierwise compress train``, and **fitted**
quantizers from ``tierwise compress fit``.

Alongside quality: encode and decode times, and the end-to-end latency of one image at
250 KB/s (head + encode + transfer + decode + tail, compute timed on this machine).
Writes ``compression.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from tierwise.bench.compression_report import (
    Row,
    Section,
    markdown,
    plot,
    previous_sections,
    rich_table,
    section_json,
)
from tierwise.bench.report import environment, write_results
from tierwise.codecs.base import Codec, TrainedCodec
from tierwise.codecs.entropy import ZstdCodec
from tierwise.codecs.image import DEFAULT_MEAN, DEFAULT_STD, ImageCodec
from tierwise.codecs.loaders import load_trained_codec
from tierwise.codecs.quantize import UniformQuantCodec
from tierwise.codecs.training.cifar_backbone import batches, sample
from tierwise.codecs.training.job import tail_function
from tierwise.codecs.training.scoring import score_codec
from tierwise.datasets.cifar10 import Cifar10
from tierwise.models.cifar_input import MEAN, STD
from tierwise.models.cifar_net import load

RAW_BYTES = 32 * 32 * 3
LINK_BYTES_PER_S = 250_000
QUALITIES = (10, 25, 50, 75, 90)
TARGET_SHARE_OF_RAW = 0.05  # CIFAR-10: ≤ 5% of raw bytes at ≤ 0.5 pt loss
LITE_AGREEMENT = 0.97  # Lite0: ≥ 97% agreement with ≤ 10% of JPEG-90's bytes
LITE_SHARE_OF_JPEG90 = 0.10
VQA_MODEL = "vqa-net"  # the name `tierwise compress train` gives VQA codecs' model
Log = Callable[[str], None]


def input_codecs() -> list[Codec]:
    codecs: list[Codec] = [ImageCodec("PNG")]
    codecs += [ImageCodec("JPEG", q) for q in QUALITIES]
    codecs += [ImageCodec("WEBP", q) for q in QUALITIES]
    return codecs


def uniform_codecs() -> list[Codec]:
    plain = [UniformQuantCodec(b) for b in (8, 4, 2)]
    return [*plain, *(ZstdCodec(c) for c in plain)]


def _stage_ms(stages: nn.Sequential, x: np.ndarray, index: int) -> float:
    """Median time of one stage on one input, on this machine."""
    part = stages[index : index + 1].eval()
    times = []
    with torch.inference_mode():
        for i in range(min(15, len(x))):
            t = torch.from_numpy(x[i : i + 1])
            started = time.perf_counter()
            part(t)
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times[3:] or times)


def _features(
    stages: nn.Sequential, inputs: np.ndarray, keep: set[int], batch: int
) -> tuple[dict[int, np.ndarray], list[float]]:
    """Inputs at each split in ``keep``, and each stage's time on one input."""
    features, current, stage_ms = {}, inputs, []
    with torch.inference_mode():
        for k in range(len(stages)):
            stage_ms.append(_stage_ms(stages, current, k))
            current = np.concatenate(
                [
                    stages[k](torch.from_numpy(current[i : i + batch])).numpy()
                    for i in range(0, len(current), batch)
                ]
            )
            if k + 1 in keep:
                features[k + 1] = current
    return features, stage_ms


class _Runner:
    """Scores codecs on one task and collects rows."""

    def __init__(
        self,
        section: Section,
        top1: np.ndarray,
        labels: np.ndarray | None,
        log: Log,
        context: np.ndarray | None = None,
    ):
        self.section, self.top1, self.labels, self.log = section, top1, labels, log
        self.context = context

    def add(self, family: str, codec: Codec, split: int, inputs: np.ndarray, tail: Any) -> None:
        s = self.section
        score = score_codec(codec, split, inputs, tail, self.top1, self.labels, self.context)
        head, rest = sum(s.stage_ms[:split]), sum(s.stage_ms[split:])
        transfer = 1e3 * score.wire_bytes / LINK_BYTES_PER_S
        latency = head + score.encode_ms + transfer + score.decode_ms + rest
        row = Row(family, score, latency)
        s.rows.append(row)
        self.log(
            f"{s.key}: {family:8} {codec.name:30} split {split}: {score.wire_bytes:9.1f} B, "
            f"{s.metric} {row.quality(s.metric):.2%}"
        )


def _to_image_codec_scale(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 → the normalisation image codecs expect (an exact round trip)."""
    return ((images.astype(np.float32) - DEFAULT_MEAN) / DEFAULT_STD).transpose(0, 3, 1, 2)


def _cifar_net_on_codec_pixels(stages: nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    run = tail_function(stages, 0)
    mean, std = MEAN.reshape(1, 3, 1, 1), STD.reshape(1, 3, 1, 1)

    def tail(x: np.ndarray) -> np.ndarray:
        pixels = np.clip(np.rint(x * DEFAULT_STD + DEFAULT_MEAN), 0, 255) / 255.0
        return run(((pixels - mean) / std).astype(np.float32))

    return tail


def cifar_section(
    data: Cifar10, backbone: Path, learned: list[TrainedCodec], limit: int | None, log: Log
) -> Section:
    stages, _ = load(backbone)
    _check_fits(learned, stages)
    x, y = sample(data.x_test, data.y_test, limit)
    inputs = np.concatenate(batches(x))
    features, stage_ms = _features(stages, inputs, set(range(1, len(stages))), 500)
    top1 = np.concatenate([tail_function(stages, 0)(b).argmax(1) for b in batches(x)])
    section = Section(
        "cifar10",
        "CIFAR-10, our compact CNN: test accuracy",
        "accuracy",
        float(np.mean(top1 == y)),
        len(x),
        stage_ms,
    )
    run = _Runner(section, top1, y, log)
    for codec in input_codecs():
        run.add("input", codec, 0, _to_image_codec_scale(x), _cifar_net_on_codec_pixels(stages))
    for split in range(1, len(stages)):
        for codec in uniform_codecs():
            run.add("uniform", codec, split, features[split], tail_function(stages, split))
    for lc in learned:
        run.add(lc.family, lc, lc.split, features[lc.split], tail_function(stages, lc.split))
    section.targets = _cifar_targets(section)
    return section


def lite_section(
    data: Cifar10, model_name: str, learned: list[TrainedCodec], limit: int, log: Log
) -> Section:
    from tierwise.codecs.training.lite_backbone import upscaled
    from tierwise.models.efficientnet_lite import EfficientNetLite

    variant = model_name.removeprefix("efficientnet-")
    model = EfficientNetLite(model_name, variant)
    stages = model.as_sequential()
    _check_fits(learned, stages)
    x, _ = sample(data.x_test, data.y_test, limit)
    inputs = np.concatenate(list(upscaled(x, model.image_size)))
    splits = {c.split for c in learned}
    features, stage_ms = _features(stages, inputs, splits, 50)
    top1 = tail_function(stages, 0)(inputs).argmax(1)
    section = Section(
        model_name,
        f"{model_name} at {model.image_size}×{model.image_size}: top-1 agreement with the "
        "unsplit network (CIFAR-10 test images, upscaled)",
        "agreement",
        1.0,
        len(x),
        stage_ms,
    )
    run = _Runner(section, top1, None, log)
    for codec in input_codecs():
        run.add("input", codec, 0, inputs, tail_function(stages, 0))
    for split in sorted(splits):
        for codec in uniform_codecs():
            run.add("uniform", codec, split, features[split], tail_function(stages, split))
    for lc in learned:
        run.add(lc.family, lc, lc.split, features[lc.split], tail_function(stages, lc.split))
    section.targets = _lite_targets(section, learned)
    return section


def vqa_section(
    model_path: Path, learned: list[TrainedCodec], log: Log, limit: int | None = None
) -> Section:
    """Accuracy over the test questions (``limit``: a fixed random subset of them)."""
    from tierwise.cache import cache_dir
    from tierwise.codecs.training.vqa_backbone import image_features, numpy_tail
    from tierwise.datasets.easy_vqa import load_easy_vqa
    from tierwise.models.vqa_net import load as load_vqa
    from tierwise.models.vqa_net import pixels_to_input

    net, _ = load_vqa(model_path)
    data = load_easy_vqa(cache_dir())
    test = data.test
    keep = np.arange(len(test))
    if limit is not None and limit < len(test):
        keep = np.sort(np.random.default_rng(0).permutation(len(test))[:limit])
    image_of, answers = test.image_of[keep], test.answers[keep]
    questions = data.bag_of_words([test.questions[i] for i in keep])
    pixels = pixels_to_input(test.images)[image_of]
    n = len(net.image)
    whole = numpy_tail(net, 0)
    top1 = np.concatenate(
        [
            whole(pixels[i : i + 2000], questions[i : i + 2000]).argmax(1)
            for i in range(0, len(pixels), 2000)
        ]
    )
    stage_ms, current = [], pixels[:15]
    with torch.inference_mode():
        for k in range(n):
            stage_ms.append(_stage_ms(net.image, current, k))
            current = net.image[k](torch.from_numpy(current)).numpy()
    stage_ms.append(_tail_ms(numpy_tail(net, n), current, questions[:15]))
    section = Section(
        "easy-vqa",
        "easy-vqa, our VQA network: test accuracy over questions (image features compressed)",
        "accuracy",
        float(np.mean(top1 == answers)),
        len(keep),
        stage_ms,
    )
    run = _Runner(section, top1, answers, log, questions)
    for codec in input_codecs():
        run.add("input", codec, 0, pixels, whole)
    for at in range(1, n + 1):
        features = image_features(net, test, at)[image_of]
        for codec in uniform_codecs():
            run.add("uniform", codec, at, features, numpy_tail(net, at))
        for lc in (c for c in learned if c.split == at):
            run.add(lc.family, lc, at, features, numpy_tail(net, at))
    section.targets = _vqa_targets(section)
    return section


def _is_cifar(model: str) -> bool:
    """Codecs are grouped by the model they name: Lite and VQA names, CIFAR the rest."""
    return not model.startswith("efficientnet-") and model != VQA_MODEL


def _tail_ms(tail: Callable[..., np.ndarray], x: np.ndarray, context: np.ndarray) -> float:
    times = []
    for i in range(len(x)):
        started = time.perf_counter()
        tail(x[i : i + 1], context[i : i + 1])
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times[3:] or times)


def run_compression_bench(
    data: Cifar10 | None,
    backbone: Path | None,
    codec_files: list[Path],
    console: Console,
    out: Path,
    limit: int | None = None,
    lite_limit: int = 500,
    vqa: Path | None = None,
    keep_others: bool = False,
    vqa_limit: int | None = None,
) -> dict[str, Any]:
    """Every task that has a network (CIFAR-10, VQA) or learned codecs (EfficientNet-Lite).

    With ``keep_others``, tasks not run now keep their rows from the last results file, so
    one task can be re-measured alone (each task is compared within itself)."""
    by_model: dict[str, list[TrainedCodec]] = {}
    for path in codec_files:
        codec = load_trained_codec(path)
        by_model.setdefault(codec.model, []).append(codec)
    sections = []
    if backbone is not None and data is not None:
        cifar = [c for m, cs in by_model.items() if _is_cifar(m) for c in cs]
        sections.append(cifar_section(data, backbone, cifar, limit, console.log))
    for model, codecs in sorted(by_model.items()):
        if model.startswith("efficientnet-") and data is not None:
            sections.append(lite_section(data, model, codecs, lite_limit, console.log))
    if vqa is not None:
        codecs = by_model.get(VQA_MODEL, [])
        sections.append(vqa_section(vqa, codecs, console.log, vqa_limit))
    fresh = {s.key for s in sections}
    kept = [k for k in previous_sections(out) if k.key not in fresh] if keep_others else []
    result: dict[str, Any] = {"environment": environment(), "link_bytes_per_s": LINK_BYTES_PER_S}
    result["tasks"] = {s.key: section_json(s) for s in [*sections, *kept]}
    result["kept_from_an_earlier_run"] = sorted(k.key for k in kept)
    write_results(out, "compression", result, markdown([*sections, *kept]))
    plot([*sections, *kept], out / "compression.png")
    for s in sections:
        console.print(rich_table(s))
        for line in s.targets["lines"]:
            console.print(line)
    console.print(f"wrote {out / 'compression.md'}, compression.json and compression.png")
    return result


def _check_fits(codecs: Iterable[TrainedCodec], stages: nn.Sequential) -> None:
    for codec in codecs:
        if not 1 <= codec.split < len(stages):
            raise ValueError(f"codec {codec.name}: split {codec.split} does not exist here")


# ---------------------------------------------------------------- targets

MEASURES = ("payload", "wire")  # payload: what raw 3,072 B and a JPEG file are; wire: all


def _size(r: Row, measure: str) -> float:
    return r.score.payload_bytes if measure == "payload" else r.score.wire_bytes


def _smallest(s: Section, rows: Iterable[Row], max_loss_pt: float, measure: str) -> Row | None:
    ok = [r for r in rows if s.loss_pt(r) <= max_loss_pt + 1e-9]
    return min(ok, key=lambda r: _size(r, measure), default=None)


def _describe(r: Row, measure: str) -> str:
    return f"{r.score.codec} at split {r.score.split}, {_size(r, measure):.1f} B"


def _cifar_targets(s: Section) -> dict[str, Any]:
    """≤ 5% of raw at ≤ 0.5 pt loss; at ≤ 1 pt loss, half the best JPEG/WebP."""
    images = [r for r in s.rows if r.score.codec.startswith(("jpeg", "webp"))]
    limit = TARGET_SHARE_OF_RAW * RAW_BYTES
    out: dict[str, Any] = {"lines": []}
    for measure in MEASURES:
        half_pt = _smallest(s, s.rows, 0.5, measure)
        one_pt = _smallest(s, s.rows, 1.0, measure)
        image = _smallest(s, images, 1.0, measure)
        met_raw = half_pt is not None and _size(half_pt, measure) <= limit
        met_image = bool(one_pt and image and _size(one_pt, measure) <= _size(image, measure) / 2)
        out[measure] = {
            "within_half_pt": half_pt.score.as_dict() if half_pt else None,
            "within_one_pt": one_pt.score.as_dict() if one_pt else None,
            "best_image_codec_within_one_pt": image.score.as_dict() if image else None,
            "five_percent_of_raw_met": met_raw,
            "half_of_best_image_met": met_image,
        }
        if half_pt is not None:
            out["lines"].append(
                f"CIFAR-10 [{measure} bytes] ≤0.5 pt loss: smallest is "
                f"{_describe(half_pt, measure)} ({_size(half_pt, measure) / RAW_BYTES:.2%} of raw);"
                f" target ≤ {limit:.1f} B: {'met' if met_raw else 'MISSED'}"
            )
        if one_pt is not None and image is not None:
            out["lines"].append(
                f"CIFAR-10 [{measure} bytes] ≤1 pt loss: smallest is {_describe(one_pt, measure)};"
                f" best JPEG/WebP is {_describe(image, measure)}; target ≤ "
                f"{_size(image, measure) / 2:.1f} B: {'met' if met_image else 'MISSED'}"
            )
    return out


def _share_target(
    s: Section, ok: list[Row], condition: str, base: Row, share: float
) -> dict[str, Any]:
    """The smallest row in ``ok`` against ``share`` of ``base``'s size, by each measure."""
    out: dict[str, Any] = {"lines": []}
    for measure in MEASURES:
        best = min(ok, key=lambda r: _size(r, measure), default=None)
        limit = share * _size(base, measure)
        met = best is not None and _size(best, measure) <= limit
        out[measure] = {"smallest": best.score.as_dict() if best else None, "met": met}
        found = "nothing" if best is None else _describe(best, measure)
        out["lines"].append(
            f"{s.key} [{measure} bytes] {condition}: smallest is {found}; {base.score.codec} is "
            f"{_size(base, measure):.1f} B; target ≤ {limit:.1f} B ({share:.0%} of it): "
            f"{'met' if met else 'MISSED'}"
        )
    return out


def _lite_targets(s: Section, learned: list[TrainedCodec]) -> dict[str, Any]:
    """≥ 97% agreement with ≤ 10% of JPEG-90's bytes; photos' agreement from the cards."""
    jpeg90 = next(r for r in s.rows if r.score.codec == "jpeg90")
    ok = [r for r in s.rows if r.score.agreement >= LITE_AGREEMENT]
    out = _share_target(s, ok, f"≥{LITE_AGREEMENT:.0%} agreement", jpeg90, LITE_SHARE_OF_JPEG90)
    out["photo_agreement_from_cards"] = {c.name: _photo_agreement(c) for c in learned}
    return out


def _photo_agreement(codec: TrainedCodec) -> float | None:
    also: dict[str, dict[str, Any]] = codec.card.get("also_measured", {})
    for description, score in also.items():
        if "photos" in description:
            return float(score["agreement"])
    return None


def _vqa_targets(s: Section) -> dict[str, Any]:
    """≤ 0.5 pt loss with ≥ 95% fewer bytes than the PNG input."""
    png = next(r for r in s.rows if r.score.codec == "png")
    ok = [r for r in s.rows if s.loss_pt(r) <= 0.5 + 1e-9]
    return _share_target(s, ok, "≤0.5 pt loss", png, 0.05)


# ---------------------------------------------------------------- output
