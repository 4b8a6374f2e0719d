"""``tierwise compress``: learn or fit the feature codecs that split inference sends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import DataOpt, console, data_folder, fail_input, phase_progress
from tierwise.errors import TierwiseError

if TYPE_CHECKING:
    from tierwise.codecs.base import TrainedCodec
    from tierwise.codecs.training.backbone import Backbone
    from tierwise.codecs.training.backbone_registry import BackboneSource

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
    from tierwise.codecs.training.bottleneck_training import CompressConfig

    kind = _backbone_kind(model)
    owner = model_name or _default_owner(model, kind)
    names = _codec_names(name, owner, split, [f"b{b:g}" for b in beta])
    config = CompressConfig(
        split=split, beta=beta[0], latent=latent, stride=stride, epochs=epochs, lr=lr
    )
    try:
        source = _source(model, kind, owner, data, labels, images, test_images)
        backbone = _open(kind, source)
        with phase_progress() as step:
            codecs = backbone.train(config, tuple(zip(beta, names, strict=True)), step)
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
    kind = _backbone_kind(model)
    owner = model_name or _default_owner(model, kind)
    names = _codec_names(name, owner, split, [f"q{b}" for b in bits])
    try:
        source = _source(model, kind, owner, data, False, images, test_images)
        backbone = _open(kind, source)
        with phase_progress() as step:
            codecs = backbone.fit(split, tuple(zip(bits, names, strict=True)), step)
    except (TierwiseError, ValueError) as exc:
        raise fail_input(exc) from exc
    _report_codecs(codecs, out)


def _backbone_kind(model: str) -> str:
    """Which backbone MODEL is: a pretrained EfficientNet-Lite by name, else one of our
    networks by its file's format."""
    from tierwise.arrays_file import read_format
    from tierwise.models.vqa_net import FORMAT as VQA_FORMAT

    if model.removeprefix("efficientnet-") in ("lite0", "lite1", "lite2"):
        return "efficientnet-lite"
    path = Path(model)
    return "vqa-net" if path.is_file() and read_format(path) == VQA_FORMAT else "cifar-net"


def _default_owner(model: str, kind: str) -> str:
    """The model name codecs are for, as the default cluster specs call it."""
    return {"efficientnet-lite": model, "vqa-net": "vqa-net"}.get(kind, "cifar10-net")


def _source(
    model: str,
    kind: str,
    owner: str,
    data: Path | None,
    labels: bool,
    images: int | None,
    test_images: int | None,
) -> BackboneSource:
    """What the backbone is made from: easy-vqa for the VQA network, else CIFAR-10."""
    from tierwise.cache import cache_dir
    from tierwise.codecs.training.backbone_registry import BackboneSource
    from tierwise.datasets.cifar10 import load_cifar10
    from tierwise.datasets.easy_vqa import load_easy_vqa

    if kind == "vqa-net":
        dataset: Any = load_easy_vqa(cache_dir())
    else:
        dataset = load_cifar10(data_folder(data), cache_dir())
    return BackboneSource(model, owner, dataset, labels, images, test_images)


def _open(kind: str, source: BackboneSource) -> Backbone:
    from tierwise.codecs.training.backbone_registry import open_backbone

    return open_backbone(kind, source)


def _codec_names(name: str | None, owner: str, split: int, suffixes: list[str]) -> list[str]:
    """NAME as given for a single codec; else one per variant, MODEL-sSPLIT (or NAME) plus
    its suffix."""
    stem = name or f"{owner}-s{split}"
    return [stem if name and len(suffixes) == 1 else f"{stem}-{s}" for s in suffixes]


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
