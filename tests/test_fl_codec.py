"""Federated update compression, partitioning and settings: the parts without Flower runs."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard
from pydantic import ValidationError

from tierwise.federated.fl_config import FLSettings
from tierwise.federated.link_accounting import ClientLeg, settle_round
from tierwise.federated.partition import PartitionSpec, partition_indices
from tierwise.federated.update_codec import (
    CompressionSpec,
    UpdateRejected,
    decode_update,
    encode_update,
)

SHAPES = [(64, 33), (33,), (10, 64), (10,)]


def _delta(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.01, s).astype(np.float32) for s in SHAPES]


def _total() -> int:
    return sum(int(np.prod(s)) for s in SHAPES)


@pytest.mark.parametrize("text", ["none", "q8", "q4", "topk:0.01", "topk:0.01+q8", "topk:0.1+q4"])
def test_spec_names_round_trip(text: str) -> None:
    assert CompressionSpec.parse(text).name == text


@pytest.mark.parametrize("text", ["q3", "topk", "topk:0", "topk:1.5", "zip", "topk:0.1q8", ""])
def test_bad_specs_name_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="compress"):
        CompressionSpec.parse(text)


@pytest.mark.parametrize("bits", [8, 4])
def test_dense_quantization_is_close_and_unbiased(bits: int) -> None:
    delta = _delta()
    spec = CompressionSpec(bits=bits)
    decoded = [decode_update(encode_update(delta, spec, None, np.random.default_rng(i))[0], SHAPES)
               for i in range(200)]  # fmt: skip
    step = max(float(d.max() - d.min()) for d in delta) / ((1 << bits) - 1)
    for i, original in enumerate(delta):
        assert np.abs(decoded[0][i] - original).max() <= step * 1.001
        mean = np.mean([d[i] for d in decoded], axis=0)
        # Stochastic rounding: the average of many decodings converges on the truth.
        assert np.abs(mean - original).mean() < step / 8


def test_quantized_update_is_much_smaller_than_float32() -> None:
    delta = _delta()
    q8, _ = encode_update(delta, CompressionSpec(bits=8), None, np.random.default_rng(0))
    q4, _ = encode_update(delta, CompressionSpec(bits=4), None, np.random.default_rng(0))
    raw = 4 * _total()
    assert len(q8) < raw / 3.5 and len(q4) < raw / 6


def test_topk_keeps_k_values_and_error_feedback_loses_nothing() -> None:
    delta = _delta()
    spec = CompressionSpec(topk=0.05)
    payload, residual = encode_update(delta, spec, None, np.random.default_rng(0))
    decoded = np.concatenate([d.ravel() for d in decode_update(payload, SHAPES)])
    flat = np.concatenate([d.ravel() for d in delta])
    assert np.count_nonzero(decoded) == int(np.ceil(0.05 * _total()))
    assert residual is not None
    np.testing.assert_allclose(decoded + residual, flat, atol=1e-7)
    # The kept entries are the largest in magnitude.
    assert np.abs(flat[decoded != 0]).min() >= np.abs(flat[decoded == 0]).max()
    # Next round, the residual is added before choosing: a left-out value eventually goes.
    payload2, residual2 = encode_update(delta, spec, residual, np.random.default_rng(1))
    decoded2 = np.concatenate([d.ravel() for d in decode_update(payload2, SHAPES)])
    assert residual2 is not None
    np.testing.assert_allclose(decoded + decoded2 + residual2, 2 * flat, atol=1e-6)


def test_topk_with_quantized_values() -> None:
    delta = _delta()
    payload, residual = encode_update(
        delta, CompressionSpec(topk=0.01, bits=8), None, np.random.default_rng(0)
    )
    decoded = np.concatenate([d.ravel() for d in decode_update(payload, SHAPES)])
    flat = np.concatenate([d.ravel() for d in delta])
    assert residual is not None
    np.testing.assert_allclose(decoded + residual, flat, atol=1e-6)
    assert len(payload) < 4 * _total() / 30


def _header(mode: int, bits: int, total: int, count: int) -> bytes:
    return struct.pack("<4sBBHII", b"TWU1", mode, bits, 0, total, count)


def _sparse(count: int, gaps: list[int], values: bytes) -> bytes:
    body = np.array(gaps, "<u4").tobytes() + values
    return _header(1, 32, _total(), count) + zstandard.ZstdCompressor().compress(body)


NAN = np.array([np.nan], "<f4").tobytes()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "shorter than its header"),
        (b"XXXX" + bytes(12), "magic"),
        (_header(0, 7, _total(), 4), "unknown mode"),
        (_header(0, 8, _total() + 1, 4), "global model has"),
        (_header(0, 8, _total(), 3), "tensors"),
        (_header(1, 32, _total(), 1) + b"not zstd", "not valid zstd"),
        (_sparse(2, [5, 0], bytes(8)), "repeats an index"),
        (_sparse(1, [_total() + 1], bytes(4)), "names index"),
        (_sparse(1, [1], bytes(400)), "header implies"),
        (_sparse(1, [1], NAN), "NaN"),
    ],
)
def test_malformed_updates_are_rejected(payload: bytes, message: str) -> None:
    with pytest.raises(UpdateRejected, match=message):
        decode_update(payload, SHAPES)


def test_update_for_another_model_is_rejected() -> None:
    payload, _ = encode_update(_delta(), CompressionSpec(bits=8), None, np.random.default_rng(0))
    with pytest.raises(UpdateRejected, match="global model has"):
        decode_update(payload, [(64, 33), (33,)])


def test_iid_partition_covers_every_example_once() -> None:
    labels = np.repeat(np.arange(10), 100)
    parts = partition_indices(labels, 7, PartitionSpec.parse("iid"), seed=3)
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(1000))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_dirichlet_partition_is_skewed_complete_and_repeatable() -> None:
    labels = np.repeat(np.arange(10), 500)
    spec = PartitionSpec.parse("dirichlet:0.5")
    parts = partition_indices(labels, 10, spec, seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(5000))
    top_share = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    assert np.mean(top_share) > 0.25  # IID would give about 0.1
    again = partition_indices(labels, 10, spec, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


@pytest.mark.parametrize("text", ["dirichlet", "dirichlet:-1", "shards:2"])
def test_bad_partition_specs(text: str) -> None:
    with pytest.raises(ValueError, match="partition"):
        PartitionSpec.parse(text)


def test_settings_validate_and_survive_a_config_record() -> None:
    settings = FLSettings(compress="topk:0.01+q8", partition="dirichlet:0.5", uplink="250KB/s")
    assert settings.uplink == 250_000
    assert FLSettings.from_record({**settings.to_record(), "server-round": 3}) == settings
    with pytest.raises(ValidationError, match="compress"):
        FLSettings(compress="gzip")
    with pytest.raises(ValidationError, match=r"Flower 1\.41"):
        FLSettings(strategy="scaffold")


def test_stragglers_set_the_round_time() -> None:
    settings = FLSettings(clients=4, slow_clients=1, slow_factor=5.0)
    rates = {p: settings.link_rates(p) for p in range(4)}
    legs = [ClientLeg(p, down_bytes=500_000, up_bytes=250_000, compute_s=1.0) for p in range(4)]
    record = settle_round(1, legs, rates, (settings.uplink, settings.downlink), 60.0)
    # 1 s down + 1 s compute + 5 s up on the 50 KB/s straggler.
    assert record.simulated_s == pytest.approx(7.0)
    legs[0].outcome = "no reply"
    assert settle_round(1, legs, rates, (250e3, 500e3), 60.0).simulated_s == 60.0
