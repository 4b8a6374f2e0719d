"""One contract, every codec: round trips, sizes, and clear errors on bad messages."""

from __future__ import annotations

import numpy as np
import pytest

from tierwise.codecs import wire
from tierwise.codecs.registry import FEATURE_CODECS, INPUT_CODECS, decode_message, get_codec
from tierwise.errors import NotFoundError, WireFormatError


def _features(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 8, 5, 7)) * rng.uniform(0.1, 5, (1, 8, 1, 1))).astype(
        np.float32
    )


def _image_input(seed: int = 0) -> np.ndarray:
    """A smooth photo-like image, normalised the EfficientNet way."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:48]
    pixels = np.stack([(xx * 5) % 256, (yy * 7) % 256, ((xx + yy) * 3) % 256]).astype(np.float32)
    pixels = np.clip(pixels + rng.normal(0, 2, pixels.shape), 0, 255).round()
    return ((pixels - 127.0) / 128.0)[None].astype(np.float32)


@pytest.mark.parametrize("name", FEATURE_CODECS)
def test_feature_codec_round_trip_within_its_step(name: str) -> None:
    codec = get_codec(name)
    x = _features()
    out = decode_message(wire.decode_tensor(codec.to_wire(x)))
    assert out.shape == x.shape and out.dtype == np.float32
    span = x.max(axis=(0, 2, 3), keepdims=True) - x.min(axis=(0, 2, 3), keepdims=True)
    base = name.removesuffix("+zstd")  # entropy coding is lossless: the inner step bounds it
    bits = {"raw": None, "fp16": None, "q8": 8, "q6": 6, "q4": 4, "q2": 2}[base]
    if bits is None:
        np.testing.assert_allclose(
            out, x, rtol=1e-3 if base == "fp16" else 0, atol=1e-3 if base == "fp16" else 0
        )
    else:
        step = span / ((1 << bits) - 1)
        assert np.all(np.abs(out - x) <= step / 2 + 1e-5)


@pytest.mark.parametrize(
    ("name", "ratio"), [("fp16", 2), ("q8", 4), ("q6", 16 / 3), ("q4", 8), ("q2", 16)]
)
def test_feature_codecs_shrink_by_their_bit_width(name: str, ratio: float) -> None:
    x = np.random.default_rng(1).standard_normal((1, 32, 28, 28)).astype(np.float32)
    encoded = get_codec(name).encode(x)
    ranges = 0 if name == "fp16" else 8 * 32  # per-channel minimum and step, float32
    assert encoded.array.nbytes == pytest.approx(x.nbytes / ratio + ranges, rel=0.01)
    assert len(get_codec(name).to_wire(x)) < encoded.array.nbytes + 100  # metadata is tiny


@pytest.mark.parametrize("name", INPUT_CODECS)
def test_input_codec_round_trip(name: str) -> None:
    x = _image_input()
    out = decode_message(wire.decode_tensor(get_codec(name).to_wire(x)))
    assert out.shape == x.shape
    if name == "png":
        np.testing.assert_array_equal(out, x)  # lossless
    else:
        assert float(np.abs(out - x).mean()) * 128 < 8  # mean error under 8 grey levels


def test_input_codec_batches_images_separately() -> None:
    x = np.concatenate([_image_input(0), _image_input(1)[:, ::-1].copy()])
    encoded = get_codec("png").encode(x)
    assert len(encoded.meta["lengths"]) == 2
    np.testing.assert_array_equal(get_codec("png").decode(encoded.array, encoded.meta), x)


def test_jpeg_is_smaller_than_png_is_smaller_than_raw_pixels() -> None:
    x = _image_input()
    sizes = {n: len(get_codec(n).to_wire(x)) for n in ("jpeg75", "jpeg90", "png")}
    assert sizes["jpeg75"] < sizes["jpeg90"] < sizes["png"] < x[0].size  # raw uint8 pixels


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"codec": "q8"}, "needs metadata field 'shape'"),
        ({"codec": "q8", "shape": [1, 2, 2]}, "shorter than the 16 bytes of ranges for 2"),
        ({"codec": "q4", "shape": [1, 1, 9]}, "shorter than the 8 bytes of ranges"),
        ({"codec": "jpeg90", "shape": [1, 3, 4, 4], "lengths": [99]}, "do not fit"),
        ({"codec": "zstd-magic"}, "unknown codec 'zstd-magic'"),
        ({"codec": 7}, "unknown codec 7"),
    ],
)
def test_bad_codec_messages_are_rejected(meta: dict, match: str) -> None:
    message = wire.WireTensor(np.zeros(4, dtype=np.uint8), meta)
    with pytest.raises(WireFormatError, match=match):
        decode_message(message)


def test_quantized_codes_must_match_the_shape() -> None:
    ranges = np.array([0.0, 1.0], "<f4").view(np.uint8)  # one channel: minimum 0, step 1
    codes = np.zeros(4, np.uint8)  # 9 four-bit codes need 5 bytes
    message = wire.WireTensor(np.concatenate([ranges, codes]), {"codec": "q4", "shape": [1, 1, 9]})
    with pytest.raises(WireFormatError, match="expected 5 bytes"):
        decode_message(message)


def test_garbage_image_bytes_are_an_input_error() -> None:
    meta = {"codec": "jpeg90", "shape": [1, 3, 4, 4], "lengths": [4]}
    with pytest.raises(Exception, match="cannot decode image"):
        decode_message(wire.WireTensor(np.frombuffer(b"nope", dtype=np.uint8), meta))


def test_unknown_codec_name_lists_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=r"unknown codec 'gzip'; codecs are \["):
        get_codec("gzip")


# -- lossless entropy coding on top of a feature codec ----------------------------------------


def test_zstd_is_lossless_over_its_inner_codec_and_shrinks_sparse_features() -> None:
    from tierwise.codecs.registry import decode_message, get_codec

    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(1, 16, 28, 28)), 0).astype(np.float32)  # ReLU-like
    x[:, 8:] = 0.0  # half the channels silent, as after a ReLU often happens
    for name in ("q8", "q4", "fp16"):
        plain, packed = get_codec(name), get_codec(f"{name}+zstd")
        via_plain = decode_message(wire.decode_tensor(plain.to_wire(x)))
        via_packed = decode_message(wire.decode_tensor(packed.to_wire(x)))
        np.testing.assert_array_equal(via_packed, via_plain)
        assert len(packed.to_wire(x)) < 0.8 * len(plain.to_wire(x))


def test_zstd_refuses_payloads_that_would_inflate_past_their_declared_size() -> None:
    from tierwise.codecs.registry import get_codec

    codec = get_codec("q8+zstd")
    x = np.zeros((1, 4, 64, 64), np.float32)
    enc = codec.encode(x)
    lying = {**enc.meta, "inner_shape": [16]}  # claims 16 bytes; the payload holds 16 KiB
    with pytest.raises(WireFormatError, match=r"does not decompress|decompressed to"):
        codec.decode(enc.array, lying)
    with pytest.raises(WireFormatError, match="inner_dtype"):
        codec.decode(enc.array, {k: v for k, v in enc.meta.items() if k != "inner_dtype"})
    with pytest.raises(WireFormatError, match="does not decompress"):
        codec.decode(np.frombuffer(b"not zstd at all", np.uint8), enc.meta)
