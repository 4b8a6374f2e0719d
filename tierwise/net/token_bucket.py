"""A token bucket that answers "how long must these bytes wait?" and does no IO itself.

The bucket may go into debt: a reservation larger than the tokens on hand is granted
at once and the caller sleeps for the returned delay. Later reservations queue behind
that debt, so several connections sharing one link get the link's rate between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The burst is this many seconds of traffic at the current rate, and at least one MTU.
#: Kept short so that a small transfer after an idle spell is not faster than the rate.
BURST_SECONDS = 0.001
MIN_BURST_BYTES = 1500
#: Bytes are passed on in slices of about this many seconds of traffic.
SLICE_SECONDS = 0.01


class TokenBucket:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._clock = clock
        self._rate = rate
        self._tokens = self.burst
        self._stamp = clock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return max(self._rate * BURST_SECONDS, MIN_BURST_BYTES)

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on; tokens earned so far keep their byte value."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._refill()
        self._rate = rate
        self._tokens = min(self._tokens, self.burst)

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` of tokens and return how many seconds the caller must wait."""
        self._refill()
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now


def slice_size(rate: float) -> int:
    """Bytes to pass per step: about 10 ms of traffic, between 1,500 B and 64 KiB.

    Small steps keep slow links smooth instead of bursting a whole socket read.
    """
    return int(min(64 * 1024, max(MIN_BURST_BYTES, rate * SLICE_SECONDS)))
