"""The token bucket's arithmetic, on a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from tierwise.net.token_bucket import MIN_BURST_BYTES, TokenBucket, slice_size


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _drain(bucket: TokenBucket, clock: FakeClock, total: int, piece: int) -> float:
    """Send ``total`` bytes in ``piece``-byte steps, sleeping as told; return the time taken."""
    start = clock.now
    for _ in range(total // piece):
        clock.now += bucket.reserve(piece)
    return clock.now - start


@pytest.mark.parametrize("rate", [50e3, 300e3, 1e6, 10e6])
def test_long_run_rate_matches_setting(rate: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock)
    total = int(rate * 5)
    elapsed = _drain(bucket, clock, total, slice_size(rate))
    assert total / elapsed == pytest.approx(rate, rel=0.02)


def test_idle_bucket_allows_only_a_small_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100e3, clock)
    clock.now += 60  # a long idle period must not bank a minute of bytes
    assert bucket.reserve(int(bucket.burst)) == 0.0
    assert bucket.reserve(10_000) == pytest.approx(0.1)


def test_debt_queues_later_reservations() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock)
    first = bucket.reserve(MIN_BURST_BYTES + 1000)  # one second of debt
    second = bucket.reserve(1000)  # must wait behind the first
    assert first == pytest.approx(1.0)
    assert second == pytest.approx(2.0)


def test_set_rate_applies_from_now() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1e6, clock)
    bucket.set_rate(100e3)
    elapsed = _drain(bucket, clock, 500_000, 1500)
    assert 500_000 / elapsed == pytest.approx(100e3, rel=0.02)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate)
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(1.0).set_rate(rate)


def test_slices_are_small_on_slow_links_and_capped_on_fast_ones() -> None:
    assert slice_size(50e3) == MIN_BURST_BYTES
    assert slice_size(1e6) == 10_000
    assert slice_size(1e9) == 64 * 1024
