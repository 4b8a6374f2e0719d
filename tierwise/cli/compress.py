"""``tierwise compress``: learn or fit the feature codecs that split inference sends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tierwise.cli.common import DataOpt, console, data_folder, fail_input, phase_progress
from tierwise.errors import TierwiseError

if TYPE_CHECKING:
    from tierwise.codecs.base import TrainedCodec
    from tierwise.codecs.training.bottleneck_training import CompressConfig
    from tierwise.codecs.training.job import Prepared
    from tierwise.datasets.cifar10 import Cifar10

Step = Callable[[str, int, int], None]

compress_app = typer.Typer(help="Learned feature codecs for split inference.", no_args_is_help=True)

CodecModelOpt = Annotated[
    str,
    typer.Option(help="A network from `tierwise train cifar10` (.npz), or efficientnet-lite0/1/2."),
]
ModelNameOpt = Annotated[
    str | None, typer.Option(help="The model's name in cluster specs (default: derived).")
]
TestImagesOpt = Annotated[
    int | None, typer.Option(min=1, help="Test images (default: all; 1,000 for Lite).")
]
CodecOutOpt = Annotated[Path, typer.Option(help="Folder for the codec files (NAME.npz).")]


@compress_app.command("train")
def compress_train(
    split: Annotated[int, typer.Option(min=1, help="Split point: stages before it send.")],
    beta: Annotated[
        list[float], typer.Option(min=0.0, help="Rate weight per bit; repeat for a sweep.")
    ],
    model: CodecModelOpt = "models/cifar10-net.npz",
    model_name: ModelNameOpt = None,
    latent: Annotated[int, typer.Option(min=1, help="Latent channels of the bottleneck.")] = 16,
    stride: Annotated[int, typer.Option(min=1, max=4, help="Spatial downsampling.")] = 1,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the cached features.")] = 4,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (Adam).")] = 2e-3,
    labels: Annotated[
        bool, typer.Option(help="Use labels; --no-labels distils from the unsplit model only.")
    ] = True,
    images: Annotated[
        int | None, typer.Option(min=1, help="Training images (default: all; 5,000 for Lite).")
    ] = None,
    test_images: TestImagesOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Codec name (default MODEL-sSPLIT-bBETA).")
    ] = None,
    data: DataOpt = None,
    out: CodecOutOpt = Path("models/codecs"),
) -> None:
    """Train task-oriented bottlenecks at a split point, backbone frozen; save each with a card.

    EfficientNet-Lite codecs learn without labels, by distillation on upscaled CIFAR-10."""
    from tierwise.arrays_file import read_format
    from tierwise.cache import cache_dir
    from tierwise.codecs.training.bottleneck_training import CompressConfig
    from tierwise.datasets.cifar10 import load_cifar10
    from tierwise.models.vqa_net import FORMAT as VQA_FORMAT

    lite = _is_lite(model)
    vqa = not lite and read_format(Path(model)) == VQA_FORMAT
    owner = model_name or (model if lite else "vqa-net" if vqa else "cifar10-net")
    names = _codec_names(name, owner, split, [f"b{b:g}" for b in beta])
    folder = data_folder(data)
    config = CompressConfig(
        split=split, beta=beta[0], latent=latent, stride=stride, epochs=epochs, lr=lr
    )
    variants = tuple(zip(beta, names, strict=True))
    try:
        if vqa:
            codecs = _compress_vqa(Path(model), owner, config, variants, labels)
        else:
            dataset = load_cifar10(folder, cache_dir())
            codecs = _compress_images(
                model, lite, owner, config, variants, labels, images, test_images, dataset
            )
    except (TierwiseError, ValueError) as exc:
        raise fail_input(exc) from exc
    _report_codecs(codecs, out)


@compress_app.command("fit")
def compress_fit(
    split: Annotated[int, typer.Option(min=1, help="Split point: stages before it send.")],
    bits: Annotated[
        list[int], typer.Option(min=4, max=8, help="Bits per value (4-8); repeat for several.")
    ],
    model: CodecModelOpt = "models/cifar10-net.npz",
    model_name: ModelNameOpt = None,
    images: Annotated[
        int | None, typer.Option(min=1, help="Images to fit on (default: all; 5,000 for Lite).")
    ] = None,
    test_images: TestImagesOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Codec name (default MODEL-sSPLIT-qBITS).")
    ] = None,
    data: DataOpt = None,
    out: CodecOutOpt = Path("models/codecs"),
) -> None:
    """Fit quantizers at a split point: one range for the tensor and per-channel code
    tables, learned from unlabelled images. Nothing is trained; seconds after the features.

    Best where a plain q-codec's per-channel ranges would outweigh the codes, such as
    EfficientNet-Lite's pooled embedding (split 6)."""
    from tierwise.cache import cache_dir
    from tierwise.codecs.training.job import fit_job
    from tierwise.datasets.cifar10 import load_cifar10

    lite = _is_lite(model)
    owner = model_name or (model if lite else "cifar10-net")
    names = _codec_names(name, owner, split, [f"q{b}" for b in bits])
    try:
        dataset = load_cifar10(data_folder(data), cache_dir())
        with phase_progress() as step:
            prepared = _prepare_features(
                model, lite, owner, split, dataset, images, test_images, step
            )
            codecs = fit_job(prepared, tuple(zip(bits, names, strict=True)), step)
    except (TierwiseError, ValueError) as exc:
        raise fail_input(exc) from exc
    _report_codecs(codecs, out)


def _is_lite(model: str) -> bool:
    return model.removeprefix("efficientnet-") in ("lite0", "lite1", "lite2")


def _codec_names(name: str | None, owner: str, split: int, suffixes: list[str]) -> list[str]:
    """NAME as given for a single codec; else one per variant, MODEL-sSPLIT (or NAME) plus
    its suffix."""
    stem = name or f"{owner}-s{split}"
    return [stem if name and len(suffixes) == 1 else f"{stem}-{s}" for s in suffixes]


def _compress_vqa(
    model: Path,
    owner: str,
    config: CompressConfig,
    variants: tuple[tuple[float, str], ...],
    labels: bool,
) -> list[TrainedCodec]:
    from tierwise.cache import cache_dir
    from tierwise.codecs.training.vqa_backbone import compress_vqa
    from tierwise.datasets.easy_vqa import load_easy_vqa

    questions = load_easy_vqa(cache_dir())
    with phase_progress() as step:
        return compress_vqa(model, owner, config, variants, questions, labels, step)


def _compress_images(
    model: str,
    lite: bool,
    owner: str,
    config: CompressConfig,
    variants: tuple[tuple[float, str], ...],
    labels: bool,
    images: int | None,
    test_images: int | None,
    dataset: Cifar10,
) -> list[TrainedCodec]:
    """EfficientNet-Lite (by distillation on upscaled CIFAR-10) or our CIFAR-10 network."""
    with phase_progress() as step:
        if lite:
            from tierwise.codecs.training.lite_backbone import compress_lite

            variant = model.removeprefix("efficientnet-")
            return compress_lite(
                owner, variant, config, variants, dataset, images or 5000, test_images or 1000, step
            )
        from tierwise.codecs.training.cifar_backbone import compress_cifar

        return compress_cifar(
            Path(model), owner, config, variants, dataset, labels, images, test_images, step
        )


def _prepare_features(
    model: str,
    lite: bool,
    owner: str,
    split: int,
    dataset: Cifar10,
    images: int | None,
    test_images: int | None,
    step: Step,
) -> Prepared:
    """The features at the split of EfficientNet-Lite or our CIFAR-10 network, unlabelled."""
    if lite:
        from tierwise.codecs.training.lite_backbone import prepare_lite

        variant = model.removeprefix("efficientnet-")
        return prepare_lite(
            owner, variant, split, dataset, images or 5000, test_images or 1000, step
        )
    from tierwise.codecs.training.cifar_backbone import prepare_cifar

    return prepare_cifar(Path(model), owner, split, dataset, False, images, test_images, step)


def _report_codecs(codecs: list[TrainedCodec], out: Path) -> None:
    for codec in codecs:
        codec.save(out / f"{codec.name}.npz")
        m = codec.card["measured"]
        accuracy = "" if m["accuracy"] is None else f", accuracy {m['accuracy']:.2%}"
        console.print(
            f"{codec.name}: {m['payload_bytes']:.1f} B payload per image "
            f"({m['wire_bytes']:.1f} B on the wire), agreement {m['agreement']:.2%}{accuracy} "
            f"on {codec.card['measured_on']}; wrote {out / (codec.name + '.npz')}"
        )
