"""A byte-wise range-ANS entropy coder with static tables, one table per channel.

A learned bottleneck predicts, for each latent channel, a distribution over the integer
symbols it sends. Coding the symbols with those probabilities costs close to their
information content (−log2 p bits each), which general-purpose compressors such as zstd
cannot reach on a few hundred small integers: they spend at least a bit per byte and a
frame header besides.

The coder is the classic rANS construction (J. Duda, 2013): a 32-bit state, renormalised
a byte at a time, probabilities quantised to ``PRECISION`` bits. Symbols are encoded in
reverse so that the decoder reads them forward. The stream ends with the 4-byte state.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tierwise.errors import WireFormatError

PRECISION = 14
TOTAL = 1 << PRECISION
_LOW = 1 << 23  # the state stays in [_LOW, 256·_LOW)


@dataclass(frozen=True)
class Tables:
    """Quantised frequencies for each channel over symbols ``offset .. offset+K-1``.

    ``freq`` and ``cum`` are C×K and C×(K+1) integer arrays; each row of ``freq`` sums to
    ``TOTAL`` and every entry is at least 1, so any symbol in range can be coded.
    """

    freq: np.ndarray
    cum: np.ndarray
    offset: int

    @property
    def alphabet(self) -> int:
        return int(self.freq.shape[1])

    @cached_property
    def as_lists(self) -> tuple[list[list[int]], list[list[int]]]:
        """``freq`` and ``cum`` as Python lists, which the coding loops index fastest;
        made once per table, not per message (a wide table has 10⁵ entries or more)."""
        return self.freq.tolist(), self.cum.tolist()


def tables_from_probabilities(probs: np.ndarray, offset: int) -> Tables:
    """Quantise C×K probabilities (rows summing to about 1) into coding tables."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be C×K with K ≥ 2, got {probs.shape}")
    channels, k = probs.shape
    if k > TOTAL // 4:
        raise ValueError(f"alphabet of {k} symbols is too large for {PRECISION}-bit tables")
    p = np.clip(probs.astype(np.float64), 0.0, None)
    p /= p.sum(axis=1, keepdims=True)
    # Every symbol keeps at least one slot; the rest is shared out in proportion.
    freq = 1 + np.floor(p * (TOTAL - k)).astype(np.int64)
    short = TOTAL - freq.sum(axis=1)
    freq[np.arange(channels), p.argmax(axis=1)] += short
    cum = np.concatenate([np.zeros((channels, 1), np.int64), np.cumsum(freq, axis=1)], axis=1)
    return Tables(freq, cum, offset)


def encode(symbols: np.ndarray, channel_of: np.ndarray, tables: Tables) -> bytes:
    """Code integer ``symbols`` (flat), each with the table of ``channel_of`` (same length)."""
    index = symbols.astype(np.int64) - tables.offset
    if index.size and (index.min() < 0 or index.max() >= tables.alphabet):
        raise ValueError(
            f"symbols must lie in [{tables.offset}, {tables.offset + tables.alphabet - 1}]"
        )
    freqs = tables.freq[channel_of, index].tolist()
    starts = tables.cum[channel_of, index].tolist()
    out = bytearray()
    state = _LOW
    bound = (_LOW >> PRECISION) << 8
    for f, c in zip(reversed(freqs), reversed(starts), strict=True):
        limit = bound * f
        while state >= limit:
            out.append(state & 0xFF)
            state >>= 8
        state = ((state // f) << PRECISION) + (state % f) + c
    out += state.to_bytes(4, "little")
    out.reverse()
    return bytes(out)


def decode(data: bytes, channel_of: np.ndarray, tables: Tables) -> np.ndarray:
    """The symbols :func:`encode` coded; ``channel_of`` must match the encoder's."""
    if len(data) < 4:
        raise WireFormatError(f"entropy-coded stream of {len(data)} bytes is shorter than 4")
    state = int.from_bytes(data[:4], "big")
    pos = 4
    mask = TOTAL - 1
    freq, cum = tables.as_lists
    channels = channel_of.tolist()
    out = np.empty(len(channels), np.int64)
    for i, ch in enumerate(channels):
        slot = state & mask
        # the symbol whose slots hold ``slot``: a C-speed binary search, and no C×TOTAL
        # lookup table (42 MB for a 1,280-channel codec)
        s = bisect_right(cum[ch], slot) - 1
        state = freq[ch][s] * (state >> PRECISION) + slot - cum[ch][s]
        while state < _LOW:
            if pos >= len(data):
                raise WireFormatError("entropy-coded stream ended early: the payload is corrupt")
            state = (state << 8) | data[pos]
            pos += 1
        out[i] = s
    # A whole stream leaves the state exactly where encoding started.
    if pos != len(data) or state != _LOW:
        raise WireFormatError("entropy-coded stream did not decode cleanly: the payload is corrupt")
    return out + tables.offset
