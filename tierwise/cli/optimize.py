"""``tierwise optimize``: make a smaller variant of a model for the planner to place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import (
    DataOpt,
    PrecisionOpt,
    console,
    data_folder,
    fail,
    parse_precision,
    phase_progress,
)
from tierwise.errors import InputError, TierwiseError

if TYPE_CHECKING:
    from tierwise.optimize.optimize_job import Quantize
    from tierwise.optimize.optimize_run import OptimizeRequest


def optimize(
    model: Annotated[
        str,
        typer.Argument(
            help="efficientnet-lite0/1/2, a network from `tierwise train cifar10` (.npz), or "
            "with --distill a student such as cifar-net:w12."
        ),
    ],
    export: Annotated[
        str | None, typer.Option(help="onnx: export only (every variant is ONNX in the end).")
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="int8 (static, calibrated), int8-dynamic, or none.")
    ] = "none",
    calibration: Annotated[
        Path | None, typer.Option(help="Folder of images to calibrate static int8 on.")
    ] = None,
    prune: Annotated[
        float | None, typer.Option(help="Fraction of channels to remove, in (0, 1).")
    ] = None,
    distill: Annotated[
        str | None, typer.Option(help="Teacher network to distil the MODEL student from.")
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Distillation or post-pruning fine-tune passes.")
    ] = 4,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Peak learning rate.")] = None,
    finetune_images: Annotated[
        Path | None,
        typer.Option(help="Images to recover a pruned EfficientNet-Lite on (default CIFAR-10)."),
    ] = None,
    finetune_count: Annotated[
        int, typer.Option(min=1, help="CIFAR-10 training images to recover a pruned Lite on.")
    ] = 2000,
    held_out_images: Annotated[
        int, typer.Option(min=0, help="Upscaled CIFAR-10 test images to measure Lite on.")
    ] = 500,
    name: Annotated[str | None, typer.Option(help="Variant name (default from the steps).")] = None,
    model_name: Annotated[
        str | None, typer.Option(help="The model's name in cluster specs (default: derived).")
    ] = None,
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Variants folder nodes load from.")] = Path(
        "models/variants"
    ),
    device: Annotated[
        str, typer.Option(help="Where distillation and fine-tuning train: cpu, or cuda.")
    ] = "cpu",
    precision: PrecisionOpt = "fp32",
    weight_bits: Annotated[
        int | None,
        typer.Option(
            help="Static int8 weight width, 7 or 8 (default: 8 where this CPU has VNNI, "
            "else 7). Give 7 for devices without VNNI: their int8 kernels can saturate on "
            "8-bit weights."
        ),
    ] = None,
    allow_requantize: Annotated[
        bool, typer.Option(help="GGUF: quantize a file that is already quantized.")
    ] = False,
) -> None:
    """Quantize, prune or distil a vision model into a variant the planner can place;
    or quantize a GGUF chat model with llama.cpp (MODEL.gguf --quantize q4_k_m)."""
    from tierwise.optimize.optimize_run import OptimizeRequest

    if model.endswith(".gguf"):
        vision_only = {
            "--prune": prune,
            "--distill": distill,
            "--export": export,
            "--calibration": calibration,
            "--weight-bits": weight_bits,
        }
        _refuse_given(vision_only)
        folder = Path("models/gguf") if out == Path("models/variants") else out
        _optimize_gguf(Path(model), quantize, folder, allow_requantize)
        return
    request = OptimizeRequest(
        model=model,
        model_name=model_name,
        name=name,
        export=export,
        quantize=_quantize_mode(quantize),
        calibration=calibration,
        prune=prune,
        distill=distill,
        epochs=epochs,
        lr=lr,
        finetune_images=finetune_images,
        finetune_count=finetune_count,
        held_out_images=held_out_images,
        data=data_folder(data),
        out=out,
        device=device,
        precision=parse_precision(precision),
        weight_bits=weight_bits,
    )
    _optimize_vision(request)


def _refuse_given(vision_only: dict[str, Any]) -> None:
    given = [option for option, value in vision_only.items() if value is not None]
    if given:
        refused = ", ".join(given)
        raise fail(InputError(f"MODEL: a GGUF model takes only --quantize, not {refused}"))


def _quantize_mode(quantize: str) -> Quantize:
    modes: dict[str, Quantize] = {"none": "none", "int8": "static", "int8-dynamic": "dynamic"}
    if quantize not in modes:
        expected = "expected int8, int8-dynamic or none"
        raise fail(InputError(f"--quantize: {expected}, got {quantize!r}"))
    return modes[quantize]


def _optimize_vision(request: OptimizeRequest) -> None:
    from tierwise.optimize.optimize_run import optimize as run

    try:
        with phase_progress() as step:
            outcome = run(request, step)
    except TierwiseError as exc:
        raise fail(exc) from exc
    m = outcome.card.measured
    extra = "".join(f", {key} {value:.2%}" for key, value in m.items() if key.endswith("accuracy"))
    console.print(
        f"{outcome.card.base}:{outcome.card.name}: agreement {m['agreement']:.2%} on "
        f"{int(m['n'])} held-out images{extra}; {int(m['params']):,} parameters; "
        f"wrote {outcome.folder}"
    )
    if m["agreement"] < 0.9:
        console.print(
            "[yellow]warning: this variant disagrees with its base on more than 10% of the "
            "held-out images; nodes will serve it, so give policies a min_quality, or delete "
            f"{outcome.folder}[/]"
        )


def _optimize_gguf(source: Path, qtype: str, folder: Path, allow_requantize: bool) -> None:
    from tierwise.optimize.gguf_quantize import quantize_gguf

    try:
        with console.status(f"quantizing {source.name} to {qtype} with llama.cpp..."):
            out, card = quantize_gguf(source, qtype, folder, allow_requantize)
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(
        f"{out}: {card.type}, {card.bytes_after / 1e6:.1f} MB from {card.bytes_before / 1e6:.1f} "
        f"MB ({card.bytes_before / card.bytes_after:.2f}× smaller); top next token agrees with "
        f"{card.source_type} at {card.next_token_agreement:.1%} of {card.positions} positions; "
        f"{card.seconds:.1f} s"
    )
    console.print(
        "serve it from a node: add to the spec's models\n"
        f"  {out.stem}:\n    kind: llama-cpp\n    gguf: {{path: {out}}}\n"
        "and list it in that node's models; the planner then profiles and places it."
    )
