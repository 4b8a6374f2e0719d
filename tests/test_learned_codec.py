"""The rANS coder, learned bottleneck codecs, their training, and their place among plans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.synthetic_cifar import synthetic_dataset, trained_net
from tierwise.cli import app
from tierwise.codecs import rans, wire
from tierwise.codecs.codec_file import read_header
from tierwise.codecs.learned import BottleneckNet, LearnedCodec, load_codec
from tierwise.codecs.registry import decode_message, get_codec, register
from tierwise.codecs.training.bottleneck_training import CompressConfig
from tierwise.codecs.training.cifar_backbone import CifarBackbone
from tierwise.codecs.training.job import fit_job
from tierwise.datasets.cifar10 import CLASSES
from tierwise.errors import InputError, WireFormatError

# ---------------------------------------------------------------- rANS


def _tables(seed: int, channels: int = 6, k: int = 21) -> tuple[rans.Tables, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.exp(rng.normal(0, 3, (channels, k)))
    p /= p.sum(1, keepdims=True)
    return rans.tables_from_probabilities(p, -(k // 2)), p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rans_round_trips_and_costs_about_the_information(seed: int) -> None:
    tables, p = _tables(seed)
    rng = np.random.default_rng(seed + 10)
    channel_of = np.tile(np.arange(6), 200)
    index = np.array([rng.choice(21, p=p[c]) for c in channel_of])
    symbols = index + tables.offset
    data = rans.encode(symbols, channel_of, tables)
    np.testing.assert_array_equal(rans.decode(data, channel_of, tables), symbols)
    information = -np.log2(p[channel_of, index]).sum() / 8
    assert information - 1 <= len(data) <= information * 1.02 + 6


def test_rans_refuses_symbols_out_of_range_and_corrupt_streams() -> None:
    tables, _ = _tables(0)
    channel_of = np.zeros(50, np.int64)
    with pytest.raises(ValueError, match=r"\[-10, 10\]"):
        rans.encode(np.full(50, 11), channel_of, tables)
    data = rans.encode(np.zeros(50, np.int64), channel_of, tables)
    with pytest.raises(WireFormatError):
        rans.decode(data + b"\x00", channel_of, tables)
    with pytest.raises(WireFormatError):
        rans.decode(data[:3], channel_of, tables)


# ---------------------------------------------------------------- the codec


def _codec(seed: int = 0) -> LearnedCodec:
    torch.manual_seed(seed)
    net = BottleneckNet(channels=16, latent=4, hidden=8, stride=2)
    header = {"name": "ib-unit", "model": "m", "split": 2, "input_shape": [16, 8, 8]}
    return LearnedCodec(net, header)


def test_the_rate_model_predicts_the_bytes_sent() -> None:
    codec = _codec()
    x = np.random.default_rng(0).normal(0, 3, (1, 16, 8, 8)).astype(np.float32)
    encoded = codec.encode(x)
    with torch.inference_mode():
        y = torch.round(codec.net.encode(torch.from_numpy(x)))
        bits = float(codec.net.bits(y).sum())
    assert bits / 8 - 1 <= encoded.array.size <= bits / 8 + 6
    restored = codec.decode(encoded.array, encoded.meta)
    assert restored.shape == x.shape and restored.dtype == np.float32


def test_bad_input_to_a_learned_codec_names_the_expected_form() -> None:
    codec = _codec()
    with pytest.raises(WireFormatError, match=r"N×16×8×8 \(model m, split 2\), got \[1, 8, 8, 8\]"):
        codec.encode(np.zeros((1, 8, 8, 8), np.float32))
    good = codec.encode(np.ones((1, 16, 8, 8), np.float32))
    with pytest.raises(WireFormatError, match="N×16×8×8, metadata says"):
        codec.decode(good.array, {"shape": [1, 16, 4, 4]})
    with pytest.raises(WireFormatError):
        codec.decode(good.array[:-1], good.meta)  # a truncated stream never decodes
    message = bytearray(codec.to_wire(np.ones((1, 16, 8, 8), np.float32)))
    message[-1] ^= 0xFF
    with pytest.raises(WireFormatError, match="CRC-32"):
        wire.decode_tensor(bytes(message))


def test_a_codec_file_is_not_something_else(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="tierwise compress train"):
        load_codec(tmp_path / "missing.npz")
    from tierwise.models.cifar_net import build, save

    save(build(4), 4, {}, tmp_path / "net.npz")
    with pytest.raises(InputError, match="tierwise-bottleneck/1"):
        load_codec(tmp_path / "net.npz")


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A tiny backbone and a bottleneck at split 3, trained without labels."""
    folder = tmp_path_factory.mktemp("compress")
    data = synthetic_dataset()
    net = trained_net(folder, data)
    config = CompressConfig(split=3, beta=5e-4, latent=8, epochs=6, batch=32, lr=1e-2)
    backbone = CifarBackbone(net, "cifar-tiny", data, use_labels=False)
    (codec,) = backbone.train(config, ((5e-4, "ib-tiny"),))
    codec.save(folder / "ib-tiny.npz")
    yield net, folder / "ib-tiny.npz"


@pytest.fixture(scope="module")
def fitted(trained: tuple[Path, Path]) -> Path:
    """A fitted quantizer at the same split, beside the learned codec."""
    net, learned = trained
    prepared = CifarBackbone(net, "cifar-tiny", synthetic_dataset(train=256, test=64)).prepare(3)
    (codec,) = fit_job(prepared, ((6, "fq-tiny"),))
    codec.save(learned.with_name("fq-tiny.npz"))
    return learned.with_name("fq-tiny.npz")


def test_distillation_alone_trains_a_small_faithful_codec(trained: tuple[Path, Path]) -> None:
    _, path = trained
    header = read_header(path)
    measured = header.card["measured"]
    assert header.model == "cifar-tiny" and header.split == 3
    assert header.input_shape == (32, 8, 8)
    assert "without labels" in header.card["trained_on"]
    assert measured["agreement"] >= 0.9, header.card
    raw_bytes = 4 * 32 * 8 * 8
    assert measured["payload_bytes"] < raw_bytes / 50, measured
    assert header.card["history"][-1]["bits"] < header.card["history"][0]["bits"]


def test_a_saved_codec_decodes_what_the_trained_one_encoded(trained: tuple[Path, Path]) -> None:
    _, path = trained
    loaded = register(load_codec(path))
    x = np.random.default_rng(3).normal(0, 1, (2, 32, 8, 8)).astype(np.float32)
    message = loaded.to_wire(x)
    restored = decode_message(wire.decode_tensor(message))
    assert restored.shape == x.shape
    assert get_codec("ib-tiny") is loaded


def test_compress_train_cli_reports_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["compress", "train", "--split", "3", "--beta", "0.1", "--model", str(tmp_path / "x.npz")],
        env={"TIERWISE_DATA": str(tmp_path)},
    )
    assert result.exit_code != 0
    assert "cifar10-jpeg.tar.gz" in result.output or "tierwise train cifar10" in result.output


# ---------------------------------------------------------------- in a real cluster


def _cifar_spec(net: Path, codecs: list[Path]) -> dict[str, object]:
    power = {"active_watts": 10, "idle_watts": 1, "source": "test figures"}
    model = {"kind": "cifar-net", "path": str(net), "codecs": [str(c) for c in codecs]}
    return {
        "name": "learned-codecs",
        "variants_dir": None,  # hermetic: no developer-made variants
        "codecs_dir": None,  # nor codecs
        "models": {"cifar-tiny": model},
        "prices": {},
        "nodes": [
            {"name": "device", "tier": "device", "models": ["cifar-tiny"], "power": power},
            {"name": "edge", "tier": "edge", "models": ["cifar-tiny"], "power": power},
        ],
        "links": [
            {"a": "device", "b": "edge", "medium": "wifi", "emulate": {"bandwidth": "250KB/s"}}
        ],
        "gateway": {"api_keys": [{"name": "t", "key_env": "TEST_KEY"}]},
    }


@pytest.fixture(scope="module")
def codec_gateway(
    trained: tuple[Path, Path], fitted: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A cluster serving the tiny network with both trained codecs, as the gateway's client."""
    from tierwise.config import parse_spec
    from tierwise.runtime.launcher import LocalCluster

    net, learned = trained
    env = {"PATH": "/usr/bin:/bin", "TEST_KEY": "k-test-0123456789abcdef"}
    spec = parse_spec(_cifar_spec(net, [learned, fitted])).with_free_ports()
    with LocalCluster(spec, tmp_path_factory.mktemp("state"), env=env) as cluster:
        headers = {"Authorization": "Bearer k-test-0123456789abcdef"}
        with httpx.Client(base_url=cluster.state.gateway_url, headers=headers, timeout=60) as gw:
            yield gw


@pytest.mark.parametrize("codec_name", ["ib-tiny", "fq-tiny"])
def test_a_trained_codec_is_a_plan_the_gateway_runs_across_tiers(
    codec_gateway: httpx.Client, trained: tuple[Path, Path], photo_jpeg: bytes, codec_name: str
) -> None:
    plan = f"split@3/edge/{codec_name}"
    plans = codec_gateway.get("/v1/plans", params={"model": "cifar-tiny"}).json()["plans"]
    offered = next(p for p in plans if p["plan"] == plan)
    card = read_header(trained[1].with_name(f"{codec_name}.npz")).card["measured"]
    # the card's agreement is the agreement column; quality (accuracy) needs labelled photos
    assert offered["agreement"] == pytest.approx(card["agreement"], abs=1e-4)
    response = codec_gateway.post(
        "/v1/vision/classify",
        params={"model": "cifar-tiny"},
        content=photo_jpeg,
        headers={"X-Tierwise-Plan": plan},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tierwise"]["plan"] == plan
    assert body["predictions"][0]["label"] in CLASSES
    # the features crossed as entropy-coded bytes, not 8 KiB of floats
    assert body["tierwise"]["measured"]["bytes_up"] < 4 * 32 * 8 * 8 / 4


def test_the_compression_bench_compares_every_family(
    trained: tuple[Path, Path], fitted: Path, tmp_path: Path
) -> None:
    import json

    from rich.console import Console

    from tierwise.bench.compression import run_compression_bench

    net, codec = trained
    data = synthetic_dataset(train=8, test=120)
    console = Console(record=True, width=200)
    result = run_compression_bench(data, net, [codec, fitted], console, tmp_path, limit=100)
    written = json.loads((tmp_path / "compression.json").read_text())
    task = written["tasks"]["cifar10"]
    assert task["images"] == result["tasks"]["cifar10"]["images"] == 100
    rows = task["rows"]
    assert {r["family"] for r in rows} == {"input", "uniform", "learned", "fitted"}
    families = {r["codec"]: r["family"] for r in rows}
    assert families["ib-tiny"] == "learned" and families["fq-tiny"] == "fitted"
    assert set(families) >= {"png", "jpeg10", "webp90", "q8", "q2+zstd"}
    assert {r["split"] for r in rows if r["family"] == "uniform"} == {1, 2, 3, 4}
    png = next(r for r in rows if r["codec"] == "png")
    assert png["agreement"] == 1.0  # lossless: the same decision as the unsplit network
    learned = next(r for r in rows if r["codec"] == "ib-tiny")
    assert learned["payload_bytes"] < png["payload_bytes"] / 10
    assert learned["latency_ms_at_250KBps"] > 1e3 * learned["wire_bytes"] / 250_000
    assert "ib-tiny" in (tmp_path / "compression.md").read_text()
    assert (tmp_path / "compression.png").stat().st_size > 10_000
    assert len(task["targets"]["lines"]) == 4  # two targets, on payload and wire bytes


def test_lite_stages_as_torch_modules_are_the_served_model() -> None:
    from tierwise.codecs.training.lite_backbone import upscaled
    from tierwise.datasets.photos import photo_set
    from tierwise.models.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite("efficientnet-lite0", "lite0")
    stages = model.as_sequential()
    x = model.preprocess(photo_set(1)[0][1])
    with torch.inference_mode():
        whole = stages(torch.from_numpy(x)).numpy()
        head = stages[:4](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(whole, model.run_all(x), atol=1e-4)
    np.testing.assert_allclose(head, model.run_stages(x, 0, 4), atol=1e-5)
    assert not any(p.requires_grad for p in stages.parameters())  # the backbone stays frozen
    tiny = np.full((3, 32, 32, 3), 255, np.uint8)
    (batch,) = list(upscaled(tiny, 224))
    assert batch.shape == (3, 3, 224, 224) and np.allclose(batch, 1.0, atol=0.01)


def test_the_placement_bench_adds_learned_codecs_as_fixed_plans(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from tierwise.bench.placement import with_learned_codecs
    from tierwise.codecs.learned import save_codec
    from tierwise.config import default_spec

    header = {"name": "lite-ib", "model": "efficientnet-lite0", "split": 5}
    path = tmp_path / "lite-ib.npz"
    save_codec(BottleneckNet(320, 4, 8, 1), {**header, "input_shape": [320, 7, 7]}, path)
    hermetic = default_spec().model_copy(update={"codecs_dir": None})
    spec, plans = with_learned_codecs(hermetic, [path])
    assert plans == ["split@5/edge/lite-ib"]
    assert getattr(spec.models["efficientnet-lite0"], "codecs", None) == [path]
    with pytest.raises(InputError, match="trained for cifar-tiny"):
        with_learned_codecs(default_spec(), [trained[1]])


def test_a_bench_of_one_task_keeps_the_others_rows(tmp_path: Path) -> None:
    from rich.console import Console

    from tierwise.bench.compression import run_compression_bench
    from tierwise.bench.compression_report import (
        Row,
        Section,
        markdown,
        previous_sections,
        section_json,
    )
    from tierwise.bench.report import write_results
    from tierwise.codecs.training.scoring import CodecScore

    score = CodecScore("png", 0, 10, 500.0, 420.0, 1.0, 0.9, 0.1, 0.1)
    earlier = Section("easy-vqa", "VQA", "accuracy", 0.9, 10, [1.0], [Row("input", score, 5.0)])
    earlier.targets = {"lines": ["a line"]}
    write_results(tmp_path, "compression", {"tasks": {"easy-vqa": section_json(earlier)}}, "")
    result = run_compression_bench(None, None, [], Console(record=True), tmp_path, keep_others=True)
    assert result["kept_from_an_earlier_run"] == ["easy-vqa"]
    (again,) = previous_sections(tmp_path)
    assert again.rows[0].score == score and again.targets["lines"] == ["a line"]
    assert "VQA" in markdown([again])
