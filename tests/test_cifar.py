"""CIFAR-10 loading, the compact network, and its training loop (on data the test makes)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.synthetic_cifar import synthetic
from tierwise.cli import app
from tierwise.datasets.cifar10 import CLASSES, Cifar10, load_cifar10
from tierwise.errors import InputError
from tierwise.models.cifar_net import build, load, normalise, save
from tierwise.optimize.train_cifar import TrainConfig, _augment, train


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _tarball(folder: Path, train: int = 3) -> Path:
    path = folder / "cifar10" / "cifar10-jpeg.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, count in (("train", train), ("test", 2)):
            for label, colour in (("airplane", (250, 10, 10)), ("truck", (10, 10, 250))):
                for i in range(count):
                    data = _jpeg(colour)
                    info = tarfile.TarInfo(f"{split}/{label}/{i:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path


def test_the_tarball_is_decoded_once_and_then_read_from_the_cache(tmp_path: Path) -> None:
    _tarball(tmp_path / "data")
    first = load_cifar10(tmp_path / "data", tmp_path / "cache")
    assert first.x_train.shape == (6, 32, 32, 3) and first.x_test.shape == (4, 32, 32, 3)
    assert sorted(set(first.y_train.tolist())) == [
        CLASSES.index("airplane"),
        CLASSES.index("truck"),
    ]
    assert first.x_train[0, 0, 0, 0] > 200  # red, as written
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1
    again = load_cifar10(tmp_path / "data", tmp_path / "cache")
    np.testing.assert_array_equal(again.x_train, first.x_train)


def test_a_recopied_tarball_replaces_its_cache_entry_instead_of_adding_one(
    tmp_path: Path,
) -> None:
    tarball = _tarball(tmp_path / "data")
    load_cifar10(tmp_path / "data", tmp_path / "cache")
    (tmp_path / "cache" / "minilm-static-0123.npy").write_bytes(b"another family")
    os.utime(tarball, ns=(1_000_000_000, 1_000_000_000))  # as a fresh copy would have
    load_cifar10(tmp_path / "data", tmp_path / "cache")
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert entries == [
        "cifar10-" + f"{tarball.stat().st_size}-1000000000.npz",
        "minilm-static-0123.npy",
    ]


def test_a_missing_tarball_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cifar10-jpeg\.tar\.gz"):
        load_cifar10(tmp_path, tmp_path / "cache")


def test_each_crop_is_its_own_and_flips_mirror() -> None:
    x = torch.arange(64 * 3 * 32 * 32, dtype=torch.float32).reshape(64, 3, 32, 32)
    out = _augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    shifts = {int((out[i, 0, 16, 16] - x[i, 0, 16, 16]).item()) for i in range(64)}
    assert len(shifts) > 10  # the offsets differ image by image


def test_training_learns_and_the_network_round_trips_without_pickle(tmp_path: Path) -> None:
    x_train, y_train = synthetic(1024, 0)
    x_test, y_test = synthetic(256, 1)  # same palette, new images
    data = Cifar10(x_train, y_train, x_test, y_test)
    result = train(data, TrainConfig(epochs=4, width=8, batch=128, lr=0.05))
    assert result.test_accuracy > 0.8, result.history  # chance is 0.1
    last = result.history[-1]
    # the headline is one view per image, what the served network scores; TTA is extra
    assert last["test_accuracy"] == result.test_accuracy
    assert 0.0 < last["test_accuracy_flip_tta"] <= 1.0
    assert result.net[0][0].weight.is_contiguous()  # handed back in the default layout
    save(result.net, 8, {"test_accuracy": result.test_accuracy}, tmp_path / "net.npz")
    net, card = load(tmp_path / "net.npz")
    assert card["test_accuracy"] == result.test_accuracy
    batch = torch.from_numpy(normalise(x_test[:8]))
    with torch.inference_mode():
        np.testing.assert_allclose(net(batch).numpy(), result.net(batch).numpy(), atol=1e-5)


def test_fewer_images_than_one_batch_is_refused_before_training() -> None:
    data = Cifar10(*synthetic(100, 0), *synthetic(10, 1))
    with pytest.raises(InputError, match=r"100 images is fewer than one batch \(128\)"):
        train(data, TrainConfig(epochs=1, width=4, batch=128))


def test_the_network_has_five_stages_and_any_width() -> None:
    for width in (8, 16):
        net = build(width)
        assert len(net) == 5
        x = torch.zeros(2, 3, 32, 32)
        shapes = []
        for stage in net:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
        assert shapes == [
            (width, 32, 32),
            (2 * width, 16, 16),
            (4 * width, 8, 8),
            (8 * width, 4, 4),
            (10,),
        ]


def test_the_train_command_writes_the_network_with_a_card_of_both_accuracies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the decoded-data cache goes there
    _tarball(tmp_path / "data", train=130)  # 260 images: one batch of 256
    out = tmp_path / "net.npz"
    args = ["train", "cifar10", "--data", str(tmp_path / "data"), "--epochs", "1", "--width", "4"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    _, card = load(out)
    assert card["test_accuracy"] == card["history"][-1]["test_accuracy"]
    assert card["test_accuracy_flip_tta"] == card["history"][-1]["test_accuracy_flip_tta"]
    assert "epoch 1: test" in result.output and "with flip TTA" in result.output


def test_the_train_command_names_too_little_data_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _tarball(tmp_path / "data")  # 6 training images
    args = ["train", "cifar10", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "n.npz")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "6 images is fewer than one batch (256)" in result.output
    assert not (tmp_path / "n.npz").exists()
