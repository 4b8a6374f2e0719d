"""Fitted quantization codecs: one range, per-channel code tables learned from examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.synthetic_cifar import synthetic_dataset, trained_net
from tierwise.arrays_file import read_arrays, write_arrays
from tierwise.cli import app
from tierwise.codecs import wire
from tierwise.codecs.codec_file import FORMAT, read_header
from tierwise.codecs.fitted import FittedQuantCodec, fit_codec
from tierwise.codecs.loaders import load_trained_codec
from tierwise.codecs.registry import decode_message, get_codec, register
from tierwise.codecs.training.cifar_backbone import CifarBackbone
from tierwise.codecs.training.job import fit_job
from tierwise.errors import InputError, WireFormatError

HEADER = {"name": "fq-unit", "model": "m", "split": 6, "card": {}}


def _pooled(n: int, seed: int) -> np.ndarray:
    """Like a pooled ReLU6 embedding: many channels, one skewed value each, in [0, 6]."""
    rng = np.random.default_rng(seed)
    scale = np.random.default_rng(7).uniform(0.05, 1.5, 256)  # each channel its own spread
    x = rng.gamma(0.6, 1.0, (n, 256)) * scale
    return np.clip(x, 0, 6).astype(np.float32)[:, :, None, None]


@pytest.fixture(scope="module")
def fitted() -> FittedQuantCodec:
    return register(fit_codec(_pooled(2000, 0), 7, HEADER))


def test_values_come_back_within_half_a_step(fitted: FittedQuantCodec) -> None:
    x = _pooled(3, 1)
    restored = decode_message(wire.decode_tensor(fitted.to_wire(x)))
    assert restored.shape == x.shape and restored.dtype == np.float32
    inside = (x >= fitted.low) & (x <= fitted.high)
    assert np.abs(restored - x)[inside].max() <= fitted.step / 2 + 1e-6
    assert fitted.step == pytest.approx((fitted.high - fitted.low) / 127)


def test_the_tables_cost_fewer_bytes_than_the_codes_and_far_fewer_than_q8(
    fitted: FittedQuantCodec,
) -> None:
    x = _pooled(20, 2)
    fitted_bytes = np.mean([len(fitted.encode(x[i : i + 1]).array) for i in range(20)])
    q8 = get_codec("q8").encode(x[:1]).array.size  # 8 bytes of range per channel, then codes
    assert fitted_bytes < 256 * 7 / 8 * 0.8  # the entropy coder beats 7 plain bits a value
    assert q8 == 9 * 256 and fitted_bytes < q8 / 8


def test_values_never_seen_in_fitting_are_clipped_and_still_sent(
    fitted: FittedQuantCodec,
) -> None:
    x = np.full((1, 256, 1, 1), fitted.high, np.float32)  # the rarest code in every channel
    x[0, :10] = 50.0  # far past the fitted range
    restored = fitted.decode(fitted.encode(x).array, {"shape": [1, 256, 1, 1]})
    np.testing.assert_allclose(restored[0, :10], fitted.high, atol=1e-5)
    assert len(fitted.encode(x).array) > len(fitted.encode(_pooled(1, 3)).array)


def test_wrong_shapes_and_corrupt_payloads_are_refused(fitted: FittedQuantCodec) -> None:
    with pytest.raises(WireFormatError, match=r"N×256×1×1 \(model m, split 6\)"):
        fitted.encode(np.zeros((1, 128, 1, 1), np.float32))
    payload = fitted.encode(_pooled(1, 4)).array
    with pytest.raises(WireFormatError, match="metadata says"):
        fitted.decode(payload, {"shape": [1, 128, 1, 1]})
    with pytest.raises(WireFormatError):
        fitted.decode(payload[:-3], {"shape": [1, 256, 1, 1]})


def test_a_saved_codec_loads_as_its_kind_and_sends_the_same_bytes(
    fitted: FittedQuantCodec, tmp_path: Path
) -> None:
    path = tmp_path / "fq.npz"
    fitted.save(path)
    loaded = load_trained_codec(path)
    assert isinstance(loaded, FittedQuantCodec) and loaded.family == "fitted"
    x = _pooled(2, 5)
    assert loaded.to_wire(x) == fitted.to_wire(x)
    assert read_header(path).split == 6  # the gateway plans from the header alone


def test_bad_fitting_input_and_damaged_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bits must be one of"):
        fit_codec(_pooled(10, 0), 3, HEADER)
    with pytest.raises(ValueError, match="N×C×"):
        fit_codec(np.zeros((0, 4), np.float32), 6, HEADER)
    codec = fit_codec(_pooled(50, 0), 6, HEADER)
    with pytest.raises(InputError, match=r"tables of shape \[256, 32\], expected \[256, 64\]"):
        FittedQuantCodec(codec.header, codec.probs[:, :32])
    codec.save(tmp_path / "x.npz")
    arrays, header = read_arrays(tmp_path / "x.npz", FORMAT, "")
    write_arrays(tmp_path / "odd.npz", arrays, {**header, "kind": "mystery"})
    with pytest.raises(InputError, match="unknown codec kind 'mystery'"):
        load_trained_codec(tmp_path / "odd.npz")


def test_fitting_at_a_split_of_a_real_network_measures_it_on_held_out_images(
    tmp_path: Path,
) -> None:
    data = synthetic_dataset(train=256, test=128)
    net = trained_net(tmp_path, data)
    prepared = CifarBackbone(net, "cifar-tiny", data, use_labels=False).prepare(4)
    codecs = fit_job(prepared, ((6, "fq6"), (8, "fq8")))
    assert [c.name for c in codecs] == ["fq6", "fq8"]
    for codec in codecs:
        card = codec.card
        assert card["labels"] is False and card["fitted_on"] == 256
        # nothing is trained, and the card does not say otherwise
        assert "trained_on" not in card and "nothing is trained" in card["method"]
        assert card["data"] == "256 CIFAR-10 training images"
        assert card["measured"]["n"] == 128 and card["measured"]["agreement"] >= 0.95
        assert card["measured_on"] == "128 CIFAR-10 test images"
    assert codecs[0].card["measured"]["payload_bytes"] < codecs[1].card["measured"]["payload_bytes"]


def test_compress_fit_cli_refuses_bits_it_cannot_fit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["compress", "fit", "--split", "4", "--bits", "3"],
        env={"TIERWISE_DATA": str(tmp_path)},
    )
    assert result.exit_code == 2 and "--bits" in result.output
