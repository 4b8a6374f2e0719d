"""Link estimation from observed transfers: accuracy, step changes, back-off."""

from __future__ import annotations

import pytest

from tierwise.net.estimator import LinkEstimator


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _transfer(
    est: LinkEstimator, rate: float, rtt: float, nbytes: int = 40_000, server: float = 0.03
) -> None:
    """One call as the network would time it: RTT + bytes/rate + server time."""
    est.observe(nbytes, rtt + nbytes / rate + server, server)


def _calibrated(rate: float, rtt: float) -> LinkEstimator:
    est = LinkEstimator(Clock())
    est.observe_rtt(rtt)
    for _ in range(3):
        _transfer(est, rate, rtt)
    return est


def test_converges_on_a_steady_link() -> None:
    est = _calibrated(1e6, 0.02)
    assert est.bandwidth == pytest.approx(1e6, rel=0.01)
    assert est.rtt == pytest.approx(0.02, rel=0.01)


@pytest.mark.parametrize(
    ("before", "after"), [(2e6, 100e3), (1e6, 300e3), (50e3, 2e6), (300e3, 1e6)]
)
def test_within_20_percent_of_a_new_rate_within_3_requests(before: float, after: float) -> None:
    est = _calibrated(before, 0.02)
    estimates = []
    for _ in range(3):
        _transfer(est, after, 0.02)
        estimates.append(est.bandwidth)
    assert any(abs(e / after - 1) <= 0.2 for e in estimates), estimates  # type: ignore[operator]
    assert abs(estimates[-1] / after - 1) <= 0.2  # type: ignore[operator]


def test_one_outlier_does_not_move_the_estimate_far() -> None:
    est = _calibrated(1e6, 0.02)
    _transfer(est, 100e3, 0.02)  # a single slow transfer (a burst of cross traffic)
    _transfer(est, 1e6, 0.02)
    _transfer(est, 1e6, 0.02)
    assert est.bandwidth == pytest.approx(1e6, rel=0.35)


def test_small_calls_teach_rtt_not_bandwidth() -> None:
    est = _calibrated(1e6, 0.02)
    for _ in range(4):
        est.observe(300, 0.05 + 300 / 1e6 + 0.001, 0.001)  # the RTT grew to 50 ms
    assert est.bandwidth == pytest.approx(1e6, rel=0.01)
    assert est.rtt == pytest.approx(0.05, rel=0.1)


def test_failures_back_off_and_a_success_clears_them() -> None:
    clock = Clock()
    est = LinkEstimator(clock)
    est.failure()
    assert not est.is_up()
    clock.now += 1.01
    assert est.is_up()
    est.failure()
    est.failure()  # the back-off doubles: 2 s, then 4 s
    clock.now += 2.5
    assert not est.is_up()
    est.observe_rtt(0.02)
    assert est.is_up()
    assert est.idle_for() == 0.0


def test_a_link_faster_than_the_rtt_jitter_still_gets_a_bandwidth() -> None:
    est = LinkEstimator(clock=lambda: 0.0)
    est.observe_rtt(0.008)  # a slow health round trip
    est.observe(16 * 1024 + 400, 0.006)  # then a 16 KiB probe that took less than that
    assert est.ready
    assert est.bandwidth == pytest.approx(2 * (16 * 1024 + 400) / 0.006)
