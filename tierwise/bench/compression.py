"""``tierwise bench compression``: bytes per image against accuracy, for every way to send.

On the CIFAR-10 test images and our own network, each method sends what one request
would send, one image per wire message:

- **input** codecs (split 0): PNG, JPEG and WebP at several qualities; the receiver runs
  the whole network;
- **uniform** feature codecs at every split: per-channel 8/4/2-bit, alone and with zstd;
- **learned** bottlenecks from ``tierwise compress train``, at the split they were trained for.

Alongside accuracy: agreement with the unsplit network, encode and decode times, and the
end-to-end latency of one image at 250 KB/s (head + encode + transfer + decode + tail,
compute timed on this machine). Writes ``compression.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.codecs.base import Codec
from tierwise.codecs.entropy import ZstdCodec
from tierwise.codecs.image import DEFAULT_MEAN, DEFAULT_STD, ImageCodec
from tierwise.codecs.learned import LearnedCodec, load_codec
from tierwise.codecs.quantize import UniformQuantCodec
from tierwise.datasets.cifar10 import Cifar10
from tierwise.models.cifar_input import MEAN, STD
from tierwise.models.cifar_net import load
from tierwise.optimize.codec_score import CodecScore, score_codec
from tierwise.optimize.compress_cifar import batches, sample, tail_function

RAW_BYTES = 32 * 32 * 3
LINK_BYTES_PER_S = 250_000
QUALITIES = (10, 25, 50, 75, 90)
TARGET_SHARE_OF_RAW = 0.05  # ≤ 5% of raw bytes at ≤ 0.5 pt loss
Log = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    family: str  # input / uniform / learned
    score: CodecScore
    latency_ms: float  # one image end to end at 250 KB/s

    def loss_pt(self, reference: float) -> float:
        return 100 * (reference - (self.score.accuracy or 0.0))


def input_codecs() -> list[Codec]:
    codecs: list[Codec] = [ImageCodec("PNG")]
    codecs += [ImageCodec("JPEG", q) for q in QUALITIES]
    codecs += [ImageCodec("WEBP", q) for q in QUALITIES]
    return codecs


def uniform_codecs() -> list[Codec]:
    plain = [UniformQuantCodec(b) for b in (8, 4, 2)]
    return [*plain, *(ZstdCodec(c) for c in plain)]


def _as_image_codec_input(images: np.ndarray) -> np.ndarray:
    """uint8 N×32×32×3 → the normalisation image codecs expect (exact round trip)."""
    return ((images.astype(np.float32) - DEFAULT_MEAN) / DEFAULT_STD).transpose(0, 3, 1, 2)


def _whole_net_on_codec_pixels(stages: nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    run = tail_function(stages, 0)
    mean, std = MEAN.reshape(1, 3, 1, 1), STD.reshape(1, 3, 1, 1)

    def tail(x: np.ndarray) -> np.ndarray:
        pixels = np.clip(np.rint(x * DEFAULT_STD + DEFAULT_MEAN), 0, 255) / 255.0
        return run(((pixels - mean) / std).astype(np.float32))

    return tail


def _stage_ms(stages: nn.Sequential, x: np.ndarray, start: int, end: int) -> float:
    """Median time of stages [start, end) on one image, on this machine."""
    part = stages[start:end].eval()
    times = []
    with torch.inference_mode():
        for i in range(min(30, len(x))):
            t = torch.from_numpy(x[i : i + 1])
            started = time.perf_counter()
            part(t)
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times[5:] or times)


def run_compression_bench(
    data: Cifar10,
    backbone: Path,
    codec_files: list[Path],
    console: Console,
    out: Path,
    limit: int | None = None,
) -> dict[str, Any]:
    stages, card = load(backbone)
    x, y = sample(data.x_test, data.y_test, limit)
    inputs = np.concatenate(batches(x))
    with torch.inference_mode():
        reference = np.concatenate([stages(torch.from_numpy(b)).numpy() for b in batches(x)])
    top1 = reference.argmax(1)
    accuracy = float(np.mean(top1 == y))
    learned = [load_codec(p) for p in codec_files]
    for lc in learned:
        _check_fits(lc, stages)
    features, stage_ms = _features_by_split(stages, inputs)
    rows: list[Row] = []

    def add(family: str, codec: Codec, split: int, at_split: np.ndarray, tail: Any) -> None:
        score = score_codec(codec, split, at_split, tail, top1, y)
        head, rest = sum(stage_ms[:split]), sum(stage_ms[split:])
        transfer = 1e3 * score.wire_bytes / LINK_BYTES_PER_S
        latency = head + score.encode_ms + transfer + score.decode_ms + rest
        rows.append(Row(family, score, latency))
        console.log(
            f"{family:8} {codec.name:24} split {split}: {score.wire_bytes:8.1f} B, "
            f"accuracy {score.accuracy or 0:.2%}"
        )

    pixels = _as_image_codec_input(x)
    for codec in input_codecs():
        add("input", codec, 0, pixels, _whole_net_on_codec_pixels(stages))
    for split in range(1, len(stages)):
        for codec in uniform_codecs():
            add("uniform", codec, split, features[split], tail_function(stages, split))
    for lc in learned:
        add("learned", lc, lc.split, features[lc.split], tail_function(stages, lc.split))
    result = _summarise(rows, accuracy, card, stage_ms, len(x))
    write_results(out, "compression", result, _markdown(result, rows, accuracy))
    _plot(rows, accuracy, out / "compression.png")
    console.print(_rich_table(rows, accuracy))
    for line in result["targets"]["lines"]:
        console.print(line)
    console.print(f"wrote {out / 'compression.md'}, compression.json and compression.png")
    return result


def _check_fits(codec: LearnedCodec, stages: nn.Sequential) -> None:
    if not 1 <= codec.split < len(stages):
        raise ValueError(f"codec {codec.name}: split {codec.split} does not exist in this model")


def _features_by_split(
    stages: nn.Sequential, inputs: np.ndarray
) -> tuple[dict[int, np.ndarray], list[float]]:
    features, current = {}, inputs
    stage_ms = []
    for k in range(len(stages)):
        stage_ms.append(_stage_ms(stages, current, k, k + 1))
        with torch.inference_mode():
            current = np.concatenate(
                [
                    stages[k](torch.from_numpy(current[i : i + 500])).numpy()
                    for i in range(0, len(current), 500)
                ]
            )
        features[k + 1] = current
    return features, stage_ms


# ---------------------------------------------------------------- summary


def _size(r: Row, measure: str) -> float:
    return r.score.payload_bytes if measure == "payload" else r.score.wire_bytes


def _best(
    rows: list[Row], reference: float, max_loss_pt: float, families: set[str], measure: str
) -> Row | None:
    ok = [r for r in rows if r.family in families and r.loss_pt(reference) <= max_loss_pt]
    return min(ok, key=lambda r: _size(r, measure), default=None)


def _targets(rows: list[Row], reference: float) -> dict[str, Any]:
    """Both targets, counted on payload bytes (what the raw 3,072 B is) and on the wire."""
    everything = {"input", "uniform", "learned"}
    images = [r for r in rows if r.score.codec.startswith(("jpeg", "webp"))]
    limit = TARGET_SHARE_OF_RAW * RAW_BYTES
    out: dict[str, Any] = {"lines": []}
    for measure in ("payload", "wire"):
        half_pt = _best(rows, reference, 0.5, everything, measure)
        one_pt = _best(rows, reference, 1.0, everything, measure)
        image = _best(images, reference, 1.0, {"input"}, measure)
        met_raw = half_pt is not None and _size(half_pt, measure) <= limit
        met_image = (
            one_pt is not None
            and image is not None
            and _size(one_pt, measure) <= _size(image, measure) / 2
        )
        out[measure] = {
            "within_half_pt": half_pt.score.as_dict() if half_pt else None,
            "within_one_pt": one_pt.score.as_dict() if one_pt else None,
            "best_image_codec_within_one_pt": image.score.as_dict() if image else None,
            "five_percent_of_raw_met": met_raw,
            "half_of_best_image_met": met_image,
        }
        if half_pt is not None:
            out["lines"].append(
                f"[{measure} bytes] ≤0.5 pt loss: smallest is {half_pt.score.codec} at split "
                f"{half_pt.score.split}, {_size(half_pt, measure):.1f} B "
                f"({_size(half_pt, measure) / RAW_BYTES:.2%} of raw); target ≤ {limit:.1f} B: "
                f"{'met' if met_raw else 'MISSED'}"
            )
        if one_pt is not None and image is not None:
            out["lines"].append(
                f"[{measure} bytes] ≤1 pt loss: smallest is {one_pt.score.codec} at split "
                f"{one_pt.score.split}, {_size(one_pt, measure):.1f} B; best JPEG/WebP is "
                f"{image.score.codec} at {_size(image, measure):.1f} B; target ≤ "
                f"{_size(image, measure) / 2:.1f} B: {'met' if met_image else 'MISSED'}"
            )
    return out


def _summarise(
    rows: list[Row], reference: float, card: dict[str, Any], stage_ms: list[float], n: int
) -> dict[str, Any]:
    return {
        "environment": environment(),
        "task": "CIFAR-10 test images, our compact CNN",
        "images": n,
        "unsplit_accuracy": reference,
        "backbone_card_accuracy_with_flip_tta": card.get("test_accuracy"),
        "stage_ms": stage_ms,
        "link_bytes_per_s": LINK_BYTES_PER_S,
        "rows": [
            {
                "family": r.family,
                **r.score.as_dict(),
                "loss_pt": r.loss_pt(reference),
                "latency_ms_at_250KBps": r.latency_ms,
            }
            for r in rows
        ],
        "targets": _targets(rows, reference),
    }


_HEADERS = [
    "family",
    "codec",
    "split",
    "wire B",
    "payload B",
    "% of raw",
    "accuracy",
    "loss pt",
    "agreement",
    "enc ms",
    "dec ms",
    "latency ms @250KB/s",
]


def _cells(r: Row, reference: float) -> list[str]:
    s = r.score
    return [
        r.family,
        s.codec,
        str(s.split),
        f"{s.wire_bytes:.1f}",
        f"{s.payload_bytes:.1f}",
        f"{100 * s.wire_bytes / RAW_BYTES:.2f}",
        f"{100 * (s.accuracy or 0):.2f}",
        f"{r.loss_pt(reference):+.2f}",
        f"{100 * s.agreement:.2f}",
        f"{s.encode_ms:.3f}",
        f"{s.decode_ms:.3f}",
        f"{r.latency_ms:.2f}",
    ]


def _markdown(result: dict[str, Any], rows: list[Row], reference: float) -> str:
    ordered = sorted(rows, key=lambda r: (r.family != "learned", r.score.wire_bytes))
    parts = [
        "# Compression: bytes per image against accuracy (CIFAR-10)",
        "",
        f"{result['images']} test images; unsplit network {100 * reference:.2f}% (no test-time "
        "flip). Bytes are per image, one wire message each; payload excludes the 20-byte "
        "header and the JSON metadata. Latency: one image at 250 KB/s, compute on this machine.",
        "",
        *[f"- {line}" for line in result["targets"]["lines"]],
        "",
        markdown_table(_HEADERS, [_cells(r, reference) for r in ordered]),
    ]
    return "\n".join(parts)


def _rich_table(rows: list[Row], reference: float) -> Table:
    table = Table(title=f"compression (unsplit {100 * reference:.2f}%)")
    for h in _HEADERS:
        table.add_column(h, justify="left" if h in ("family", "codec") else "right")
    for r in sorted(rows, key=lambda r: (r.family != "learned", r.score.wire_bytes)):
        table.add_row(*_cells(r, reference))
    return table


def _plot(rows: list[Row], reference: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(_series(r), []).append(r)
    for label, members in sorted(groups.items()):
        members.sort(key=lambda r: r.score.wire_bytes)
        xs = [r.score.wire_bytes for r in members]
        ys = [100 * (r.score.accuracy or 0) for r in members]
        ax.plot(xs, ys, marker="o", markersize=3, label=label, linewidth=1)
    ax.axhline(100 * reference, color="black", linewidth=0.8, linestyle=":", label="unsplit")
    ax.axvline(TARGET_SHARE_OF_RAW * RAW_BYTES, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image on the wire (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0, 100 * reference - 15), 100 * reference + 2)
    ax.set_title("CIFAR-10: rate against accuracy")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _series(r: Row) -> str:
    name = r.score.codec
    if r.family == "input":
        return "png" if name == "png" else name.rstrip("0123456789")
    if r.family == "learned":
        return f"learned @split {r.score.split}"
    return (
        f"{name.split('+')[0][:1]}-bits{'+zstd' if '+zstd' in name else ''} @split {r.score.split}"
    )
