"""The gateway as a whole: it builds its parts, starts them and stops them.

What a request does on its way through lives in :mod:`~tierwise.gateway.pipeline` (the
shared path) and in the services, :mod:`~tierwise.gateway.vision` and
:mod:`~tierwise.gateway.chat`; this module only composes them and runs their lifecycle:
discover the models nodes serve, load tokenizers and the router, probe the links, save
what the profiles learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from tierwise.errors import ClusterError, ConfigError, InputError
from tierwise.gateway.background_profile import BackgroundProfiler
from tierwise.gateway.chat.service import ChatService
from tierwise.gateway.executor import Executor
from tierwise.gateway.live import LiveView
from tierwise.gateway.metrics import GatewayMetrics
from tierwise.gateway.nodes import NodeCalls
from tierwise.gateway.pipeline import Pipeline, Shared
from tierwise.gateway.recorder import Recorder
from tierwise.gateway.runs.planner_slot import planner_maker
from tierwise.gateway.runs.planning_ask import planning_asks
from tierwise.gateway.runs.service import RunService
from tierwise.gateway.runs.tools import ChatTool, WholeTools, compose_prompt, served_tools
from tierwise.gateway.vision import VisionService
from tierwise.gateway.whole.embeddings import EmbeddingService
from tierwise.gateway.whole.vqa import VqaService
from tierwise.ledger.store import Ledger
from tierwise.orchestrate.catalog import Catalog
from tierwise.placement.profiles import Profiles
from tierwise.runtime.node_client import NodeClient
from tierwise.runtime.state import ClusterState

PROFILE_SAVE_S = 30.0
#: How often the gateway looks for holds no live request will settle (their owner gone,
#: or past their expiry); it also looks once at start, before serving.
RECONCILE_S = 60.0
log = logging.getLogger("tierwise.gateway")


class Gateway:
    def __init__(
        self,
        state: ClusterState,
        node_token: str,
        ledger: Ledger,
        profiles: Profiles,
        clock: Callable[[], float] = time.monotonic,
        profiler: BackgroundProfiler | None = None,
    ) -> None:
        """``profiler``: measure what ``profiles`` lacks in the background once started."""
        spec, gw = state.spec, state.spec.gateway
        if gw is None:
            raise ClusterError("the cluster spec has no `gateway:` section")
        timeout = gw.attempt_timeout + 5
        clients = {
            n.name: NodeClient(state.url_from(gw.tier, n.name), node_token, timeout=timeout)
            for n in spec.nodes
        }
        self.live = LiveView(spec, gw.tier, clients, clock, gw.probe_after_idle)
        self.metrics = GatewayMetrics()
        self.ledger, self.profiles = ledger, profiles
        self.nodes = NodeCalls(clients, self.live)
        recorder = Recorder(spec, ledger, profiles, self.live, self.metrics)
        shared = Shared(spec, gw, profiles, self.live, self.nodes, recorder, ledger)
        self.pipeline = Pipeline(shared, Executor(spec, gw, ledger, self.live), self.metrics)
        self.vision = VisionService(self.pipeline)
        self.chat = ChatService(self.pipeline)
        self.embeddings = EmbeddingService(self.pipeline)
        self.vqa = VqaService(self.pipeline)
        self.runs = _run_service(self.pipeline, self.chat, self.vision, self.embeddings, self.vqa)
        self.profiler = profiler
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._reconcile()
        self.runs.planner.start(planner_maker(self.pipeline.shared.gw.runs, self.runs.catalog))
        await self.vision.discover()
        await run_in_threadpool(self.chat.load)
        shared = self.pipeline.shared
        for link in shared.spec.links:
            if shared.gw.tier in (link.a, link.b):
                for _ in range(2):
                    await self.live.probe(link.name)
        self._tasks = [
            asyncio.create_task(self.live.run_prober()),
            asyncio.create_task(self._save_profiles_every(PROFILE_SAVE_S)),
            asyncio.create_task(self._reconcile_every(RECONCILE_S)),
        ]
        if self.profiler is not None:
            self._tasks.append(asyncio.create_task(self.profiler.run(self.profiles)))

    def profiling(self) -> str:
        """Background profiling: ``running``, ``done``, ``failed: <why>``, or ``off``."""
        if self.profiler is None:
            return "off"
        if not self.profiler.done.is_set():
            return "running"
        error = self.profiler.error
        return "done" if error is None else f"failed: {type(error).__name__}: {error}"

    async def stop(self) -> None:
        await self.runs.planner.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())
        await self.nodes.aclose()
        self.chat.close()

    async def _save_profiles_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())

    async def _reconcile(self) -> None:
        """Release the holds of requests whose gateway died (each is recorded)."""
        released = await run_in_threadpool(self.ledger.reconcile)
        for r in released:
            log.warning(
                "released the $%.9f budget hold of request %s, left by %s (charged $%.9f "
                "its failed attempts used)",
                r.held_usd,
                r.request_id,
                r.owner,
                r.charged_usd,
            )

    async def _reconcile_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._reconcile()


def _run_service(
    pipeline: Pipeline,
    chat: ChatService,
    vision: VisionService,
    embeddings: EmbeddingService,
    vqa: VqaService,
) -> RunService:
    """Plain-language runs over the tools this cluster's models serve."""
    shared = pipeline.shared
    settings = shared.gw.runs
    try:
        catalog = Catalog.load(Path(settings.catalog)) if settings.catalog else Catalog.default()
    except InputError as exc:
        raise ConfigError(f"gateway.runs.catalog: {exc.message}") from exc
    tools = served_tools(shared.spec, chat, vision, WholeTools(embeddings, vqa))
    writer = ChatTool(chat, compose_prompt) if chat.models() else None
    service = RunService(pipeline, catalog, tools, writer, settings)
    service.ask_for = planning_asks(chat, settings)
    return service
