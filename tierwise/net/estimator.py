"""Live bandwidth and RTT estimates for one link, from the transfers that cross it.

Each observed call is split into server time (reported by the node), RTT and bytes ÷
bandwidth. Large calls teach the bandwidth, small ones (and ``/healthz`` probes) the
RTT. Estimates are
exponentially weighted, with a step detector: when two samples in a row both miss
the estimate by more than ``CHANGE`` in the same direction, the estimate jumps to
their mean. After a step change of the link, the estimate is right by the second
request that crosses it (tested within 20% by the third).

Failures put the link in a back-off (1 s, doubling to 8 s); a success ends it.
Pure arithmetic on a clock it is given: no IO.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WEIGHT = 0.5
BAD_NEWS_WEIGHT = 1.0
CHANGE = 0.3
#: Calls moving at least this many bytes teach the bandwidth; calls of at most
#: RTT_BYTES teach the RTT; those in between teach nothing.
BANDWIDTH_BYTES = 8 * 1024
RTT_BYTES = 2 * 1024
MIN_BACKOFF, MAX_BACKOFF = 1.0, 8.0


class _Tracker:
    """An EWMA with a two-sample step detector that believes bad news fast.

    A sample that says the link got more than twice as bad (``bad_is_lower``: less
    bandwidth; otherwise: more RTT) is believed at once (weight ``BAD_NEWS_WEIGHT``):
    sending work over a link that just collapsed costs far more than keeping it local a
    request too long, and good news is confirmed by the next sample or probe anyway.
    """

    def __init__(self, bad_is_lower: bool) -> None:
        self.value: float | None = None
        self.bad_is_lower = bad_is_lower
        self._last = 0.0
        self._pending: list[float] = []

    def add(self, sample: float) -> None:
        if self.value is None:
            self.value = self._last = sample
            return
        deviation = sample / self.value - 1.0
        if abs(deviation) > CHANGE:
            self._pending.append(deviation)
            same_way = len(self._pending) >= 2 and (self._pending[-1] > 0) == (
                self._pending[-2] > 0
            )
            if same_way:
                self.value = (self._last + sample) / 2
                self._pending.clear()
                return
        else:
            self._pending.clear()
        self._last = sample
        worse = sample < self.value / 2 if self.bad_is_lower else sample > self.value * 2
        weight = BAD_NEWS_WEIGHT if worse else WEIGHT
        self.value = (1 - weight) * self.value + weight * sample


class LinkEstimator:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bw = _Tracker(bad_is_lower=True)
        self._rtt = _Tracker(bad_is_lower=False)
        self.last_seen = -1e9
        self.samples = 0
        self._backoff = MIN_BACKOFF
        self._down_until = -1e9

    @property
    def bandwidth(self) -> float | None:
        return self._bw.value

    @property
    def rtt(self) -> float | None:
        return self._rtt.value

    @property
    def ready(self) -> bool:
        return self._bw.value is not None and self._rtt.value is not None

    def is_up(self) -> bool:
        return self._clock() >= self._down_until

    def idle_for(self) -> float:
        return self._clock() - self.last_seen

    def observe(self, nbytes: int, seconds: float, server_seconds: float = 0.0) -> None:
        """One call that moved ``nbytes`` (both ways) and took ``seconds`` end to end."""
        network = max(seconds - server_seconds, 1e-6)
        rtt, bw = self._rtt.value, self._bw.value
        # One timing cannot tell a longer RTT from a slower link, so the size of the call
        # decides which it teaches: big calls the bandwidth, small ones the RTT.
        if nbytes >= BANDWIDTH_BYTES and rtt is not None and network > rtt:
            self._bw.add(nbytes / (network - rtt))
        elif nbytes >= BANDWIDTH_BYTES and rtt is not None:
            # Faster than the RTT estimate's jitter can resolve: count half the call as
            # transfer, a cautious guess that later calls refine. Without it a fast link
            # could stay unmeasured, and so unused, for several probes.
            self._bw.add(2 * nbytes / network)
        elif nbytes <= RTT_BYTES and bw is not None:
            self._rtt.add(max(network - nbytes / bw, 1e-4))
        elif rtt is None and nbytes <= RTT_BYTES:
            self._rtt.add(network)
        self._seen()

    def seed(self, bandwidth: float, rtt: float) -> None:
        """A prior for a link no probe can reach: the first measurements soon replace it."""
        self._bw.add(bandwidth)
        self._rtt.add(max(rtt, 1e-4))

    def observe_rtt(self, seconds: float) -> None:
        """A call too small to carry bandwidth information (a health probe, say)."""
        self._rtt.add(max(seconds, 1e-4))
        self._seen()

    def failure(self) -> None:
        self._down_until = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _seen(self) -> None:
        self.last_seen = self._clock()
        self.samples += 1
        self._backoff = MIN_BACKOFF
        self._down_until = -1e9
