"""easy-vqa: loading, our VQA network, and compressing its image features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierwise.cli import app
from tierwise.codecs.training.bottleneck_training import CompressConfig
from tierwise.codecs.training.vqa_backbone import VqaBackbone
from tierwise.datasets.easy_vqa import EasyVqa, bag_of_words, load_easy_vqa
from tierwise.models.vqa_net import load, save
from tierwise.optimize.train_vqa import VqaTrainConfig, predict, train_vqa


def test_questions_become_bags_of_words() -> None:
    bags = bag_of_words(["What colour is the shape?", "is it a red circle? red!"], ["red", "shape"])
    np.testing.assert_array_equal(bags, [[0, 1], [2, 0]])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> EasyVqa:
    return load_easy_vqa(tmp_path_factory.mktemp("cache"))


def test_the_wheel_holds_images_questions_and_answers(data: EasyVqa) -> None:
    assert data.train.images.shape == (4000, 64, 64, 3) and len(data.train) == 38575
    assert data.test.images.shape == (1000, 64, 64, 3) and len(data.test) == 9673
    assert len(data.answers) == 13 and {"yes", "no", "circle"} <= set(data.answers)
    assert data.test.image_of.max() == 999 and data.train.answers.max() < 13


@pytest.fixture(scope="module")
def trained(data: EasyVqa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    result = train_vqa(data, VqaTrainConfig(epochs=3, width=8), limit=1200)
    path = tmp_path_factory.mktemp("vqa") / "vqa-net.npz"
    meta = {"vocab": data.vocab, "answers": data.answers, "width": 8, "card": {}}
    save(result.net, meta, path)
    yield path


def test_the_network_learns_and_round_trips(data: EasyVqa, trained: Path) -> None:
    net, meta = load(trained)
    assert meta["answers"] == data.answers
    answers = predict(net, data.test, data.bag_of_words(data.test.questions))
    majority = np.bincount(data.test.answers).max() / len(data.test)
    assert np.mean(answers == data.test.answers) > majority + 0.1


def test_image_features_compress_to_a_few_bytes(data: EasyVqa, trained: Path) -> None:
    config = CompressConfig(split=4, beta=2e-3, latent=4, epochs=2, batch=128, lr=5e-3)
    backbone = VqaBackbone(trained, "vqa-net", data)
    (codec,) = backbone.train(config, ((2e-3, "vqa-ib"),))
    measured = codec.card["measured"]
    assert codec.split == 4 and codec.input_shape == (32, 4, 4)
    assert measured["n"] == 9673 and "questions" in codec.card["measured_on"]
    assert measured["agreement"] > 0.85, codec.card
    assert measured["payload_bytes"] < 60, measured  # PNG sends about 385 B
    with pytest.raises(ValueError, match="image stages"):
        backbone.train(CompressConfig(split=5, beta=1.0), ((1.0, "x"),))


def test_the_compression_bench_measures_vqa(data: EasyVqa, trained: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from tierwise.bench.compression import run_compression_bench

    result = run_compression_bench(
        None, None, [], Console(record=True), tmp_path, vqa=trained, vqa_limit=300
    )
    task = result["tasks"]["easy-vqa"]
    assert task["images"] == 300 and len(task["stage_ms"]) == 5
    rows = {(r["codec"], r["split"]): r for r in task["rows"]}
    assert rows[("png", 0)]["agreement"] == 1.0
    assert {split for _, split in rows} == {0, 1, 2, 3, 4}
    assert len(task["targets"]["lines"]) == 2


def test_the_train_command_writes_the_network_with_its_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "vqa-net.npz"
    args = ["train", "vqa", "--epochs", "1", "--width", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    _, meta = load(out)
    assert 0.0 < meta["card"]["test_accuracy"] <= 1.0
    assert meta["card"]["history"][-1]["test_accuracy"] == meta["card"]["test_accuracy"]
