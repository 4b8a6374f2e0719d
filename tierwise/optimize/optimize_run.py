"""`tierwise optimize MODEL ...`: check every input, load what the steps need, run the job.

All checks come before any work: a pruning ratio outside (0, 1), a calibration folder
with no images, a student asked of a network that cannot have one, or a missing
data set fail in the first second, not after an hour of fine-tuning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierwise.cache import cache_dir
from tierwise.datasets.cifar10 import Cifar10, load_cifar10
from tierwise.datasets.image_folder import image_files, load_images
from tierwise.errors import InputError
from tierwise.optimize.onnx_quantize import WeightBits
from tierwise.optimize.optimize_data import cifar_training_images, held_out_sets
from tierwise.optimize.optimize_job import (
    OptimizeOptions,
    Outcome,
    Quantize,
    Step,
    run_optimize,
)
from tierwise.optimize.prune import check_ratio
from tierwise.optimize.sources import Source, cifar_width_source, is_lite, load_source
from tierwise.optimize.train_device import Precision, check_device

_STUDENT = re.compile(r"^cifar-net:w(\d+)$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class OptimizeRequest:
    model: str
    model_name: str | None = None
    name: str | None = None
    export: str | None = None
    quantize: Quantize = "none"
    calibration: Path | None = None
    prune: float | None = None
    distill: str | None = None
    epochs: int = 4
    lr: float | None = None
    finetune_images: Path | None = None
    finetune_count: int = 2000
    held_out_images: int = 500
    data: Path = Path("../shared/data")
    out: Path = Path("models/variants")
    device: str = "cpu"
    precision: Precision = "fp32"
    weight_bits: int | None = None


def optimize(request: OptimizeRequest, step: Step = lambda *_: None) -> Outcome:
    _check_steps(request)
    weight_bits = _weight_bits(request)
    check_device(request.device, "--device")
    source, student_width = _source(request)
    name = request.name or default_name(request, student_width)
    if not _NAME.match(name):
        allowed = "lower-case letters, digits, '.', '_' or '-'"
        raise InputError(f"--name: expected {allowed}, got {name!r}")
    calibration = _calibration(request, source)
    needs_cifar = student_width is not None or (
        request.prune is not None and source.input_kind == "cifar"
    )
    cifar = _cifar(request.data, required=needs_cifar)
    finetune = _finetune_images(request, source, cifar)
    options = OptimizeOptions(
        name=name,
        quantize=request.quantize,
        prune=request.prune,
        student_width=student_width,
        epochs=request.epochs,
        lr=request.lr if request.lr is not None else _default_lr(source, student_width),
        device=request.device,
        precision=request.precision,
        weight_bits=weight_bits,
    )
    held_out = held_out_sets(source, cifar, request.held_out_images)
    return run_optimize(source, options, request.out, held_out, cifar, calibration, finetune, step)


def default_name(request: OptimizeRequest, student_width: int | None) -> str:
    parts = []
    if student_width is not None:
        parts.append(f"student-w{student_width}")
    if request.prune is not None:
        parts.append(f"pruned{round(request.prune * 100)}")
    if request.quantize != "none":
        parts.append("int8" if request.quantize == "static" else "int8-dynamic")
    return "-".join(parts) or "fp32"


def _check_steps(request: OptimizeRequest) -> None:
    if request.distill is None and _STUDENT.match(request.model):
        raise InputError(f"MODEL: {request.model!r} is a student; it needs --distill TEACHER")
    if request.export not in (None, "onnx"):
        raise InputError(f"--export: expected onnx, got {request.export!r}")
    if request.prune is not None:
        check_ratio(request.prune)
    steps = (request.export, request.prune, request.distill)
    if request.quantize == "none" and all(s is None for s in steps):
        raise InputError(
            "nothing to do: give --export onnx, --quantize int8, --prune R or --distill TEACHER"
        )
    if request.quantize == "static" and request.calibration is None:
        raise InputError("--calibration: static int8 quantization needs a folder of images")


def _weight_bits(request: OptimizeRequest) -> WeightBits | None:
    bits = request.weight_bits
    if bits is None:
        return None
    if request.quantize != "static":
        raise InputError("--weight-bits: only static int8 (--quantize int8) has a weight width")
    if bits == 7:
        return 7
    if bits == 8:
        return 8
    raise InputError(f"--weight-bits: expected 7 or 8, got {bits}")


def _source(request: OptimizeRequest) -> tuple[Source, int | None]:
    """The network to optimize; with --distill, a fresh student of the teacher's kind."""
    if request.distill is None:
        return load_source(request.model, request.model_name), None
    student = _STUDENT.match(request.model)
    if student is None:
        raise InputError(
            f"MODEL: with --distill, expected a student like cifar-net:w12 (a CIFAR-10 network "
            f"of width 12), got {request.model!r}"
        )
    if is_lite(request.distill):
        raise InputError(
            "--distill: students are distilled from CIFAR-10 networks; an EfficientNet-Lite "
            "student would need ImageNet-scale images, which are not here"
        )
    teacher = load_source(request.distill, request.model_name)
    width = int(student.group(1))
    if width < 1:
        raise InputError(f"MODEL: student width must be at least 1, got {width}")
    student_params = cifar_width_source(width, teacher.name).params
    if student_params >= teacher.params:
        raise InputError(
            f"MODEL: a width-{width} student has {student_params:,} parameters, not fewer than "
            f"the teacher's {teacher.params:,}"
        )
    return teacher, width


def _calibration(request: OptimizeRequest, source: Source) -> np.ndarray | None:
    if request.calibration is None:
        return None
    files = image_files(request.calibration, "--calibration")
    return load_images(files, source.preprocess, "--calibration")


def _cifar(data: Path, required: bool) -> Cifar10 | None:
    try:
        return load_cifar10(data, cache_dir())
    except InputError:
        if required:
            raise
        return None


def _finetune_images(
    request: OptimizeRequest, source: Source, cifar: Cifar10 | None
) -> np.ndarray | None:
    """Images to recover a pruned EfficientNet-Lite on (CIFAR networks use their labels)."""
    if request.prune is None or source.input_kind == "cifar":
        return None
    if request.finetune_images is not None:
        files = image_files(request.finetune_images, "--finetune-images")
        return load_images(files, source.preprocess, "--finetune-images")
    if cifar is None:
        raise InputError(
            "--finetune-images: pruning EfficientNet-Lite needs images to recover on; give a "
            "folder, or make CIFAR-10 available ($TIERWISE_DATA or ../shared/data)"
        )
    return cifar_training_images(source, cifar, request.finetune_count)


def _default_lr(source: Source, student_width: int | None) -> float:
    if source.input_kind == "cifar":
        return 0.2 if student_width is not None else 0.02
    return 1e-4
