"""The gateway profiles what it has no numbers for while it already serves.

Profiling a fresh cluster takes minutes on a small machine (every node's stages and chat
speed, every codec at every split), far longer than anyone waits for ``/healthz``. So the
gateway starts with the profiles the ledger holds, and this task measures the rest in a
worker thread, into a private copy. Each time a piece is done (one model on one node, or
one model's codecs at one split) the new numbers are saved to the ledger at once and
handed to the event loop, which sets them on the live :class:`Profiles`; that bumps its
``version``, and the services rebuild their plan tables. A gateway killed halfway keeps
what was saved, and its successor measures only what is still missing.

Until a plan's numbers land the planner skips it, as it skips any unprofiled plan; the
gateway's own tier is profiled first, so local plans serve soonest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from tierwise.ledger.store import Ledger
from tierwise.placement.profiles import Profiles
from tierwise.runtime.state import ClusterState

log = logging.getLogger("tierwise.gateway.profile")

Row = tuple[str, str, str, float, int]
#: niceness of the profiling thread: serving requests comes first
PROFILE_NICE = 10


class BackgroundProfiler:
    """Measure what ``profiles`` lacks, landing each piece as it completes."""

    def __init__(self, state: ClusterState, token: str, ledger: Ledger) -> None:
        self.state, self.token, self.ledger = state, token, ledger
        self.landed = 0  # pieces saved so far
        self.done = asyncio.Event()
        self.error: BaseException | None = None

    async def run(self, profiles: Profiles) -> None:
        loop = asyncio.get_running_loop()
        known = {row[:3]: row for row in profiles.rows()}

        def land(rows: list[Row]) -> None:
            for node, model, metric, value, samples in rows:
                profiles.set(node, model, metric, value, samples)

        def hand(rows: list[Row]) -> None:
            # The loop is gone once the gateway has stopped; the rows are saved anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(land, rows)

        finished: asyncio.Future[None] = loop.create_future()

        def work() -> None:
            outcome: BaseException | None = None
            try:
                self._measure(known, hand)
            except Exception as exc:  # the gateway serves on with what it has
                outcome = exc
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, finished, outcome)

        # Its own thread, not the shared pool: it runs for minutes at a lowered priority,
        # and is a daemon so that a stopping gateway does not wait for it.
        threading.Thread(target=work, name="tierwise-profiler", daemon=True).start()
        try:
            await finished
        except Exception as exc:
            self.error = exc
            log.warning("background profiling stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self.done.set()

    def _measure(
        self, known: dict[tuple[str, str, str], Row], hand: Callable[[list[Row]], None]
    ) -> None:
        from tierwise.gateway.profiler import profile_cluster

        _lower_priority()
        scratch = Profiles.from_rows(known.values())
        seen = dict(known)

        def progress(message: str) -> None:
            fresh = [row for row in scratch.rows() if seen.get(row[:3]) != row]
            if fresh:
                self.ledger.save_profiles(fresh)
                seen.update((row[:3], row) for row in fresh)
                hand(fresh)
                self.landed += 1
            log.info("%s (%d numbers saved)", message, len(fresh))

        profile_cluster(self.state, self.token, scratch, progress, only_missing=True)
        progress("background profiling finished")


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: a thread is a task with its own nice)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PROFILE_NICE)
