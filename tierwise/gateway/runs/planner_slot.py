"""The gateway's planner, made in a worker thread while the gateway serves.

Training the learned planner on the embedded examples takes seconds; the gateway should
not wait for it before answering health checks and chat requests. A run that arrives
first waits for the planner; a planner that failed to load answers every run with the
reason (503), and a run that brings its own graph never needs one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tierwise.config import RunsSpec
from tierwise.errors import ConfigError, TierwiseError, UnavailableError
from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import load_examples
from tierwise.orchestrate.planner import Planner
from tierwise.orchestrate.planners import PLANNERS, PlannerOptions, make_planner


def planner_maker(settings: RunsSpec, catalog: Catalog) -> Callable[[], Planner]:
    """What makes the configured planner; the cheap checks (its name, its files) run now,
    so that a bad config stops the gateway at start."""
    if settings.planner not in PLANNERS:
        raise ConfigError(
            f"gateway.runs.planner: unknown planner {settings.planner!r}; "
            f"planners: {sorted(PLANNERS)}"
        )
    path = Path(settings.planner_path) if settings.planner_path else None
    for field, file in (("planner_path", path), ("examples", settings.examples)):
        if file is not None and not Path(file).is_file():
            raise ConfigError(f"gateway.runs.{field}: no file at {file}")

    def make() -> Planner:
        examples = load_examples(Path(settings.examples)) if settings.examples else None
        return make_planner(settings.planner, PlannerOptions(catalog, path, examples))

    return make


class PlannerSlot:
    def __init__(self) -> None:
        self._task: asyncio.Task[Planner] | None = None
        self.seconds: float | None = None  # how long making it took

    def start(self, make: Callable[[], Planner]) -> None:
        async def load() -> Planner:
            t0 = time.perf_counter()
            planner = await asyncio.to_thread(make)
            self.seconds = time.perf_counter() - t0
            return planner

        self._task = asyncio.create_task(load())

    async def get(self) -> Planner:
        if self._task is None:
            raise UnavailableError("no planner is loaded; send a `graph` to run")
        try:
            return await asyncio.shield(self._task)
        except TierwiseError as exc:
            raise UnavailableError(f"the planner failed to load: {exc.message}") from exc
        except Exception as exc:  # a planner that cannot load must not take the gateway down
            raise UnavailableError(f"the planner failed to load: {exc}") from exc

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
