"""When to restart a child of the local cluster, and when to give up on it.

The rules follow supervisord's: a child that was up and healthy for a while and then
exits is restarted after a short pause; a child that exits while starting, or soon after,
is *unstable*, and each unstable exit doubles the pause. Too many unstable exits within a
window means the child cannot run here (a broken model file, a port taken by another
program), and restarting it forever would only hide that: the launcher gives up and says
why. The decisions are plain arithmetic over times, kept apart from the processes so
they can be tested without any.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    """How ``tierwise up`` restarts a child that exits on its own.

    ``first_delay`` doubles with each unstable exit up to ``max_delay``; a child healthy
    for ``stable_after`` seconds is stable again. ``max_unstable`` unstable exits within
    ``window`` seconds make the launcher give up."""

    first_delay: float = 0.5
    max_delay: float = 10.0
    stable_after: float = 10.0
    max_unstable: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.first_delay < 0 or self.max_delay < self.first_delay:
            raise ValueError("restart delays must satisfy 0 <= first_delay <= max_delay")
        if self.max_unstable < 1:
            raise ValueError("max_unstable must be at least 1")


@dataclass
class CrashHistory:
    """One child's exits, and the pause before its next restart."""

    policy: RestartPolicy
    restarts: int = 0
    _streak: int = 0
    _unstable: deque[float] = field(default_factory=deque)

    def exited(self, now: float, healthy_since: float | None) -> float | None:
        """Seconds to wait before restarting a child that exited at ``now``, or None to
        give up. ``healthy_since``: when it last answered /healthz after its start (None
        if it never did)."""
        policy = self.policy
        stable = healthy_since is not None and now - healthy_since >= policy.stable_after
        if stable:
            self._streak = 0
            self._unstable.clear()
        else:
            self._unstable.append(now)
            while self._unstable and now - self._unstable[0] > policy.window:
                self._unstable.popleft()
            if len(self._unstable) >= policy.max_unstable:
                return None
        delay = min(policy.max_delay, policy.first_delay * float(2**self._streak))
        self._streak += 0 if stable else 1
        self.restarts += 1
        return delay

    @property
    def unstable_exits(self) -> int:
        return len(self._unstable)
