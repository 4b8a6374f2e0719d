"""One `tierwise optimize` run: distil → prune → export → quantize → measure → write.

Every step is optional except the ONNX export (variants are served by ONNX Runtime, and
a pruned network's new shape could not be saved any other way without pickle). All
inputs are checked before any work starts. The finished variant is written atomically
with its card; a failed run leaves nothing where nodes look for variants.

Resuming: each finished step leaves a checkpoint in ``<out>/.work/<name>/`` keyed by
the options that produced it and by the source network itself (its stages and weights),
so rerunning the same command skips what is done, and a retrained or re-cut source
starts afresh.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tierwise.datasets.cifar10 import Cifar10
from tierwise.errors import InputError
from tierwise.models.variant_file import StageFile, VariantCard, write_variant
from tierwise.optimize.onnx_quantize import WeightBits, default_weight_bits
from tierwise.optimize.prune import CHANNEL_ROUNDING, SIMD_CHANNELS
from tierwise.optimize.sources import Source
from tierwise.optimize.train_device import Precision

Step = Callable[[str, int, int], None]  # (phase, done, total)
Quantize = Literal["none", "static", "dynamic"]


@dataclass(frozen=True)
class OptimizeOptions:
    name: str
    quantize: Quantize = "none"
    prune: float | None = None
    #: width of a fresh CIFAR student distilled from the model (None: no distillation)
    student_width: int | None = None
    epochs: int = 4  # distillation or post-pruning fine-tune
    lr: float = 0.05
    #: where and how training runs: not part of the checkpoint key (the recipe is the same)
    device: str = "cpu"
    precision: Precision = "fp32"
    #: static int8 weights in 8 or 7 bits (None: what this CPU runs exactly, see
    #: onnx_quantize); 7 for devices without VNNI when this machine has it
    weight_bits: WeightBits | None = None

    def key(self, upto: str, origin: str) -> str:
        """A digest of the options that decide the checkpoint after step ``upto``, and of
        the source network they started from (``origin``, see :func:`fingerprint`)."""
        parts: dict[str, Any] = {
            "student_width": self.student_width,
            "epochs": self.epochs,
            "origin": origin,
        }
        if upto in ("prune", "export", "quantize"):
            parts |= {"prune": self.prune, "lr": self.lr}
            if self.prune is not None:  # how counts round is part of the recipe
                parts["channel_rounding"] = CHANNEL_ROUNDING
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class HeldOut:
    """Images no step trained or calibrated on, with labels where they are known."""

    name: str
    x: np.ndarray
    y: np.ndarray | None = None


@dataclass
class Outcome:
    folder: Path
    card: VariantCard


def run_optimize(
    source: Source,
    options: OptimizeOptions,
    out: Path,
    held_out: list[HeldOut],
    cifar: Cifar10 | None,
    calibration: np.ndarray | None,
    finetune: np.ndarray | None,
    step: Step = lambda *_: None,
) -> Outcome:
    """Make the variant and write it under ``out``; inputs were checked by the caller."""
    from tierwise.optimize.onnx_export import check_export, export_stages, graph_params

    started = time.perf_counter()
    reference = copy.deepcopy(source.net).eval()
    origin = fingerprint(source)
    work = out / source.name / ".work" / options.name
    steps: list[dict[str, Any]] = []
    if options.student_width is not None:
        student_accuracy = _distil(source, reference, options, cifar, work, origin, step)
        steps.append(
            {
                "step": "distill",
                "student_width": options.student_width,
                "epochs": options.epochs,
                "student_test_accuracy": student_accuracy,
            }
        )
    resumed = _load_checkpoint(work, options.key("export", origin))
    if resumed is None:
        if options.prune is not None:
            steps.append(_prune(source, options, cifar, finetune, step))
        step("exporting to ONNX", 0, 1)
        graphs = export_stages(source.net, source.input_shape)
        check = check_export(source.net, graphs, held_out[0].x[:16])
        steps.append({"step": "export", "format": "onnx", "max_abs_diff": check.max_abs_diff})
        stages = [
            StageFile(s.name, s.input_shape, s.output_shape, graph_params(graph))
            for s, graph in zip(source.stage_infos(), graphs, strict=True)
        ]
        _save_checkpoint(work, options.key("export", origin), graphs, stages, steps)
        step("exporting to ONNX", 1, 1)
    else:
        graphs, stages, steps = resumed
    if options.quantize != "none":
        bits = options.weight_bits or default_weight_bits()
        graphs = _quantize(graphs, options.quantize, calibration, bits, step)
        steps.append(_quantize_step(options.quantize, bits))
    measured = _measure(graphs, reference, held_out, step)
    measured["params"] = float(sum(s.params for s in stages))
    measured["seconds_to_make"] = round(time.perf_counter() - started, 1)
    card = VariantCard(
        options.name,
        source.name,
        source.input_kind,
        source.image_size,
        stages,
        steps,
        measured,
        measured_on=held_out[0].name,
    )
    folder = write_variant(out, card, graphs)
    return Outcome(folder, card)


def _distil(
    source: Source,
    teacher: Any,
    options: OptimizeOptions,
    cifar: Cifar10 | None,
    work: Path,
    origin: str,
    step: Step,
) -> float:
    """Replace ``source.net`` by a fresh narrower student trained on the teacher's outputs;
    returns the student's CIFAR-10 test accuracy (one view) as training measured it."""
    from tierwise.models.cifar_net import build, load, save
    from tierwise.optimize.train_cifar import TrainConfig, train

    assert options.student_width is not None and cifar is not None
    checkpoint = work / f"student-{options.key('distill', origin)}.npz"
    if checkpoint.is_file():
        source.net, card = load(checkpoint)
        return float(card["test_accuracy"])
    config = TrainConfig(
        epochs=options.epochs,
        width=options.student_width,
        lr=options.lr,
        device=options.device,
        precision=options.precision,
    )
    result = train(
        cifar,
        config,
        lambda done, total, _row: step("distilling", done, total),
        net=build(options.student_width),
        teacher=teacher,
    )
    source.net = result.net
    card = {"test_accuracy": result.test_accuracy, "history": result.history}
    save(result.net, options.student_width, card, checkpoint)
    return result.test_accuracy


def _prune(
    source: Source,
    options: OptimizeOptions,
    cifar: Cifar10 | None,
    finetune: np.ndarray | None,
    step: Step,
) -> dict[str, Any]:
    """Prune channels, then recover: on CIFAR-10 labels for CIFAR networks, else by
    distillation from the unpruned network on the fine-tune images."""
    from tierwise.optimize.distill import DistillConfig, distill_on_images
    from tierwise.optimize.prune import prune_channels
    from tierwise.optimize.train_cifar import TrainConfig, train

    assert options.prune is not None
    teacher = copy.deepcopy(source.net).eval()
    result = prune_channels(source.net, source.input_shape, options.prune)
    report = {
        "step": "prune",
        "ratio": options.prune,
        "params_before": result.params_before,
        "params_after": result.params_after,
        "channel_multiple": SIMD_CHANNELS,
        "finetune_epochs": options.epochs,
    }
    if source.input_kind == "cifar" and cifar is not None:
        config = TrainConfig(
            epochs=options.epochs, lr=options.lr, device=options.device, precision=options.precision
        )
        tuned = train(
            cifar,
            config,
            lambda done, total, _row: step("fine-tuning", done, total),
            net=source.net,
            teacher=teacher,
        )
        source.net = tuned.net
    elif finetune is not None:
        config_d = DistillConfig(
            epochs=options.epochs, lr=options.lr, device=options.device, precision=options.precision
        )
        distill_on_images(
            source.net,
            teacher,
            finetune,
            config_d,
            lambda done, total, _row: step("fine-tuning", done, total),
        )
    source.net.eval()
    return report


def _quantize(
    graphs: list[bytes],
    mode: Quantize,
    calibration: np.ndarray | None,
    weight_bits: WeightBits,
    step: Step,
) -> list[bytes]:
    from tierwise.optimize.onnx_quantize import quantize_dynamic_stages, quantize_static_stages

    step(f"quantizing ({mode})", 0, 1)
    if mode == "static":
        if calibration is None:
            raise InputError("--calibration: static quantization needs a folder of images")
        graphs = quantize_static_stages(graphs, calibration, weight_bits=weight_bits)
    else:
        graphs = quantize_dynamic_stages(graphs)
    step(f"quantizing ({mode})", 1, 1)
    return graphs


def _quantize_step(mode: Quantize, weight_bits: WeightBits) -> dict[str, Any]:
    step: dict[str, Any] = {"step": "quantize", "dtype": "int8", "mode": mode}
    if mode == "static":
        # 8-bit weights run exactly only where the serving CPU has VNNI (see onnx_quantize)
        step["weight_bits"] = weight_bits
        step["bias_correction"] = True
    return step


def _measure(
    graphs: list[bytes], reference: Any, held_out: list[HeldOut], step: Step
) -> dict[str, float]:
    """Top-1 agreement with the unoptimized network (and accuracy where labels exist)."""
    import torch

    from tierwise.optimize.onnx_export import run_graphs

    measured: dict[str, float] = {}
    for index, data in enumerate(held_out):
        step(f"measuring on {data.name}", index, len(held_out))
        pred = run_graphs(graphs, data.x, batch=100).argmax(1)
        want = []
        for i in range(0, len(data.x), 100):
            with torch.inference_mode():
                want.append(reference(torch.from_numpy(data.x[i : i + 100])).argmax(1).numpy())
        ref = np.concatenate(want)
        prefix = "" if index == 0 else f"{data.name}:"
        measured[f"{prefix}agreement"] = float((pred == ref).mean())
        measured[f"{prefix}n"] = float(len(pred))
        if data.y is not None:
            measured[f"{prefix}accuracy"] = float((pred == data.y).mean())
            measured[f"{prefix}reference_accuracy"] = float((ref == data.y).mean())
    step("measuring", len(held_out), len(held_out))
    return measured


Checkpoint = tuple[list[bytes], list[StageFile], list[dict[str, Any]]]


def fingerprint(source: Source) -> str:
    """A digest of the source network as it is: its stage layout and every weight."""
    digest = hashlib.sha256()
    for info in source.stage_infos():
        digest.update(repr((info.name, info.input_shape, info.output_shape)).encode())
    for name, tensor in source.net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _save_checkpoint(
    work: Path,
    key: str,
    graphs: list[bytes],
    stages: list[StageFile],
    steps: list[dict[str, Any]],
) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for i, graph in enumerate(graphs):
        (work / f"{key}-stage{i}.onnx").write_bytes(graph)
    # The index is written last: a checkpoint without one is incomplete and ignored.
    index = {"stages": [asdict(s) for s in stages], "steps": steps}
    (work / f"{key}.json").write_text(json.dumps(index))


def _load_checkpoint(work: Path, key: str) -> Checkpoint | None:
    path = work / f"{key}.json"
    if not path.is_file():
        return None
    index = json.loads(path.read_text())
    stages = [
        StageFile(s["name"], tuple(s["input_shape"]), tuple(s["output_shape"]), int(s["params"]))
        for s in index["stages"]
    ]
    graphs = [(work / f"{key}-stage{i}.onnx").read_bytes() for i in range(len(stages))]
    return graphs, stages, list(index["steps"])
