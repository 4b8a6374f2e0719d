"""The gateway's work for one request: admit, plan, execute, record.

Every request that gets past authentication ends as exactly one ledger record, written
before the response is sent: served (``ok``), refused by policy or budget (``rejected``),
or failed on every plan (``error``). A streamed answer is recorded when its last token
is in, before the final usage chunk goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from tierwise.codecs import wire
from tierwise.codecs.registry import decode_message, get_codec
from tierwise.config import BudgetSpec, EfficientNetLiteModel, LlamaCppModel, Policy
from tierwise.errors import ClusterError, NotFoundError, TierwiseError, UpstreamError
from tierwise.gateway.executor import Executed, Executor
from tierwise.gateway.keys import Caller
from tierwise.gateway.live import LiveView
from tierwise.gateway.metrics import GatewayMetrics
from tierwise.gateway.request_options import RequestOptions
from tierwise.ledger.costing import Measured, cost_bound, plan_cost
from tierwise.ledger.store import BudgetScope, Ledger, RequestRecord, periods
from tierwise.models.base import ChatChunk, ChatMessage, Usage
from tierwise.models.efficientnet_lite import imagenet_labels, preprocess_image
from tierwise.placement.cost import PlanTable, build_chat_table, build_vision_table
from tierwise.placement.planner import Decision, decide
from tierwise.placement.plans import Plan, chat_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.node_app import decode_image
from tierwise.runtime.node_client import ChatReply, NodeClient, PayloadReply
from tierwise.runtime.state import ClusterState

TABLE_REFRESH_S = 1.0


@dataclass(frozen=True)
class VisionModel:
    name: str
    n_stages: int
    input_size: int
    plans: list[Plan]


@dataclass
class Pending:
    """A request in progress: what its record needs, gathered as it goes."""

    id: str
    created_at: float
    caller: Caller
    task: str
    model: str
    policy: Policy | None = None
    decision: Decision | None = None
    budget_ok: bool = True
    explain: dict[str, Any] = field(default_factory=dict)


@dataclass
class Served:
    body: dict[str, Any]
    headers: dict[str, str]


class Gateway:
    def __init__(
        self,
        state: ClusterState,
        node_token: str,
        ledger: Ledger,
        profiles: Profiles,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if state.spec.gateway is None:
            raise ClusterError("the cluster spec has no `gateway:` section")
        self.spec = state.spec
        self.gw = state.spec.gateway
        self.ledger = ledger
        self.profiles = profiles
        timeout = self.gw.attempt_timeout + 5
        self.clients = {
            n.name: NodeClient(state.url_from(self.gw.tier, n.name), node_token, timeout=timeout)
            for n in self.spec.nodes
        }
        self.live = LiveView(self.spec, self.gw.tier, self.clients, clock, self.gw.probe_after_idle)
        self.executor = Executor(self.spec, self.gw, ledger, self.live)
        self.metrics = GatewayMetrics()
        self.vision: dict[str, VisionModel] = {}
        self.tokenizers: dict[str, Any] = {}
        self._tables: dict[str, tuple[int, float, PlanTable]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self._discover_vision_models()
        self._load_tokenizers()
        for link in self.spec.links:
            if self.gw.tier in (link.a, link.b):
                for _ in range(2):
                    await self.live.probe(link.name)
        self._tasks = [
            asyncio.create_task(self.live.run_prober()),
            asyncio.create_task(self.save_profiles_every(30.0)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())
        for client in self.clients.values():
            await client.aclose()
        for tokenizer in self.tokenizers.values():
            tokenizer.close()

    async def _discover_vision_models(self) -> None:
        for name, spec in self.spec.models.items():
            if not isinstance(spec, EfficientNetLiteModel):
                continue
            hosts = sorted(
                (n for n in self.spec.nodes if name in n.models),
                key=lambda n: n.tier != self.gw.tier,
            )
            for node in hosts:
                with contextlib.suppress(UpstreamError):
                    info = await self.clients[node.name].info()
                    entry = next(m for m in info["models"] if m["name"] == name)
                    n, size = len(entry["stages"]), entry["stages"][0]["input_shape"][1]
                    plans = vision_plans(self.spec, name, n, self.gw.tier)
                    self.vision[name] = VisionModel(name, n, size, plans)
                    break

    def _load_tokenizers(self) -> None:
        from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf

        for name, spec in self.spec.models.items():
            if isinstance(spec, LlamaCppModel):
                path = resolve_gguf(spec.gguf)
                self.tokenizers[name] = LlamaCppChat(name, path, spec.n_ctx, 1, 1, vocab_only=True)

    async def save_profiles_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())

    def current_plans(self, model: str) -> dict[str, Any]:
        """Every plan of a vision model as the planner sees it now (default policy)."""
        vm = self.vision.get(model)
        if vm is None:
            raise NotFoundError(f"no vision model {model!r}; models: {sorted(self.vision)}")
        table = self._vision_table(vm)
        live = self.live.state(table)
        policy = self.gw.policy
        decision = decide(table, live, policy, budget_ok=True)
        links = {
            name: {"bandwidth": est.bandwidth, "rtt": est.rtt, "up": est.is_up()}
            for name, est in self.live.links.items()
        }
        return {"model": model, "links": links, "plans": decision.explain(policy, True, live)}

    # -- model lists ---------------------------------------------------------------

    def chat_models(self) -> list[str]:
        hosted = {m for n in self.spec.nodes for m in n.models}
        return [
            name
            for name, spec in self.spec.models.items()
            if name in hosted and not isinstance(spec, EfficientNetLiteModel)
        ]

    # -- vision ----------------------------------------------------------------------

    async def classify(
        self, caller: Caller, image_bytes: bytes, model: str, top_k: int, options: RequestOptions
    ) -> Served:
        pending = Pending(uuid.uuid4().hex, time.time(), caller, "classify", model)
        try:
            vm = self.vision.get(model)
            if vm is None:
                raise NotFoundError(
                    f"no vision model {model!r}; models: {sorted(self.vision)}", param="model"
                )
            x = preprocess_image(decode_image(image_bytes), vm.input_size)
            table = self._vision_table(vm)
            executed = await self._plan_and_run(
                pending,
                table,
                options,
                lambda plan, _: self._run_vision(plan, x),
                self._vision_bound,
            )
        except TierwiseError as exc:
            await self._record_failure(pending, exc)
            raise
        logits = np.asarray(executed.result).reshape(-1)
        body = {"model": model, "predictions": _top_k(logits, top_k)}
        return await self._finish(pending, executed, body)

    def _vision_table(self, vm: VisionModel) -> PlanTable:
        """The model's plan table, rebuilt at most once a second as profiles learn."""
        now = time.monotonic()
        cached = self._tables.get(vm.name)
        if cached is not None:
            version, built, table = cached
            if version == self.profiles.version or now - built < TABLE_REFRESH_S:
                return table
        table = build_vision_table(self.spec, vm.plans, self.profiles)
        self._tables[vm.name] = (self.profiles.version, now, table)
        return table

    async def _run_vision(self, plan: Plan, x: np.ndarray) -> tuple[np.ndarray, Measured]:
        m = Measured()
        n, model = plan.n_stages, plan.model
        if plan.split == n:
            assert plan.head_node is not None
            reply = await self._stage_call(plan.head_node, model, wire.encode_tensor(x), 0, n, None)
            m.head_compute_s = reply.compute_ms / 1e3
            m.measured_compute_joules = reply.rapl_joules
            return _logits(reply), m
        assert plan.tail_node is not None and plan.codec is not None
        head_joules: float | None = 0.0  # no head stage: nothing to measure there
        if plan.split == 0:
            payload = await run_in_threadpool(get_codec(plan.codec).to_wire, x)
        else:
            assert plan.head_node is not None
            head = await self._stage_call(
                plan.head_node, model, wire.encode_tensor(x), 0, plan.split, None, plan.codec
            )
            m.head_compute_s = head.compute_ms / 1e3
            payload = head.payload
            head_joules = head.rapl_joules
        self.profiles.observe(
            ANY_NODE, model, codec_metric(plan.codec, plan.split, "bytes"), len(payload)
        )
        reply = await self._stage_call(plan.tail_node, model, payload, plan.split, n, plan.link)
        m.tail_compute_s = reply.compute_ms / 1e3
        if head_joules is not None and reply.rapl_joules is not None:
            m.measured_compute_joules = head_joules + reply.rapl_joules
        m.bytes_up, m.bytes_down = reply.transfer.bytes_up, reply.transfer.bytes_down
        return _logits(reply), m

    async def _stage_call(
        self,
        node: str,
        model: str,
        payload: bytes,
        start: int,
        end: int,
        link: str | None,
        out_codec: str = "raw",
    ) -> PayloadReply:
        reply: PayloadReply = await self._node_call(
            node, link, self.clients[node].run_payload(model, payload, start, end, out_codec)
        )
        compute_s = reply.compute_ms / 1e3
        self.live.node_served(node, compute_s)
        self.profiles.observe_stages(node, model, start, end, reply.compute_ms)
        if link is not None:
            t = reply.transfer
            self.live.observe(link, t.bytes_up + t.bytes_down, t.seconds, compute_s)
        return reply

    async def _node_call(self, node: str, link: str | None, call: Any) -> Any:
        """Await a node call, counting it as in flight and naming the node on failure."""
        health = self.live.nodes[node]
        health.inflight += 1
        if link is not None:
            self.live.link_inflight[link] += 1
        try:
            return await call
        except UpstreamError as exc:
            exc.node = node
            raise
        finally:
            health.inflight -= 1
            if link is not None:
                self.live.link_inflight[link] -= 1

    def _vision_bound(self, plan: Plan, timeout: float) -> float:
        out = self.profiles.get(ANY_NODE, plan.model, "out:bytes") or 8192
        sent = 0.0
        if plan.codec is not None:
            sent = (
                self.profiles.get(
                    ANY_NODE, plan.model, codec_metric(plan.codec, plan.split, "bytes")
                )
                or 0
            )
        return cost_bound(self.spec, plan, timeout, int(2 * sent + 4096), int(2 * out + 4096))

    # -- chat ------------------------------------------------------------------------

    def _chat_setup(
        self, body: oa.ChatCompletionRequest
    ) -> tuple[PlanTable, list[ChatMessage], int, dict[str, int]]:
        models = self.chat_models() if body.model == "auto" else [body.model]
        if body.model != "auto" and body.model not in self.chat_models():
            raise NotFoundError(
                f"no chat model {body.model!r}; models: {['auto', *self.chat_models()]}",
                param="model",
            )
        messages = body.to_messages()
        prompt_tokens = {m: self._count_prompt(m, messages) for m in models}
        max_tokens = body.max_completion_tokens or body.max_tokens or 256
        plans = chat_plans(self.spec, models, self.gw.tier)
        table = build_chat_table(self.spec, plans, self.profiles, prompt_tokens, max_tokens)
        return table, messages, max_tokens, prompt_tokens

    def _count_prompt(self, model: str, messages: list[ChatMessage]) -> int:
        tokenizer = self.tokenizers.get(model)
        if tokenizer is not None:
            return len(tokenizer.prompt_tokens(messages))
        return sum(len(m.content) for m in messages) // 4 + 8  # remote: a rough prediction only

    def _chat_bound(
        self, prompt_tokens: dict[str, int], max_tokens: int
    ) -> Callable[[Plan, float], float]:
        def bound(plan: Plan, timeout: float) -> float:
            tin = prompt_tokens.get(plan.model, 0)
            return cost_bound(
                self.spec, plan, timeout, 8 * tin + 4096, 16 * max_tokens + 4096, tin, max_tokens
            )

        return bound

    async def chat(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> Served:
        pending = Pending(uuid.uuid4().hex, time.time(), caller, "chat", body.model)
        try:
            table, messages, max_tokens, prompt_tokens = self._chat_setup(body)
            extra = _chat_params(body)
            msgs = [{"role": m.role, "content": m.content} for m in messages]

            async def run_one(plan: Plan, _: float) -> tuple[ChatReply, Measured]:
                assert plan.tail_node is not None
                reply: ChatReply = await self._node_call(
                    plan.tail_node,
                    plan.link,
                    self.clients[plan.tail_node].chat(plan.model, msgs, max_tokens, **extra),
                )
                return reply, self._chat_measured(
                    plan,
                    reply.usage,
                    reply.ext,
                    reply.transfer.bytes_up,
                    reply.transfer.bytes_down,
                    reply.transfer.seconds,
                )

            executed = await self._plan_and_run(
                pending, table, options, run_one, self._chat_bound(prompt_tokens, max_tokens)
            )
        except TierwiseError as exc:
            await self._record_failure(pending, exc)
            raise
        reply = executed.result
        body_json = oa.completion_json(
            oa.new_completion_id(),
            executed.plan.model,
            reply.text,
            reply.finish_reason,
            reply.usage,
            {},
        )
        return await self._finish(pending, executed, body_json)

    def _chat_measured(
        self, plan: Plan, usage: Usage, ext: dict[str, Any], up: int, down: int, seconds: float
    ) -> Measured:
        assert plan.tail_node is not None
        compute_s = float(ext.get("compute_ms", 0.0)) / 1e3
        self.live.node_served(plan.tail_node, compute_s)
        if plan.link is not None:
            self.live.observe(plan.link, up + down, seconds, compute_s)
        self._learn_chat(plan, usage, compute_s)
        remote = plan.link is not None
        return Measured(
            seconds,
            up if remote else 0,
            down if remote else 0,
            0.0,
            compute_s,
            usage.prompt_tokens,
            usage.completion_tokens,
        )

    def _learn_chat(self, plan: Plan, usage: Usage, compute_s: float) -> None:
        node, model = plan.tail_node or "", plan.model
        self.profiles.observe(node, model, "llm:completion_tokens", usage.completion_tokens)
        prefill = self.profiles.get(node, model, "llm:prefill_tok_s")
        overhead = (self.profiles.get(node, model, "llm:overhead_ms") or 0.0) / 1e3
        if prefill and usage.completion_tokens > 4:
            decode_s = compute_s - overhead - usage.prompt_tokens / prefill
            if decode_s > 0:
                self.profiles.observe(
                    node, model, "llm:decode_tok_s", usage.completion_tokens / decode_s
                )

    async def chat_stream(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> tuple[AsyncIterator[bytes], dict[str, str]]:
        """Plan, open the stream (falling back until a first token arrives), then relay."""
        pending = Pending(uuid.uuid4().hex, time.time(), caller, "chat", body.model)
        try:
            table, messages, max_tokens, prompt_tokens = self._chat_setup(body)
            extra = _chat_params(body)
            msgs = [{"role": m.role, "content": m.content} for m in messages]

            async def open_stream(
                plan: Plan, _: float
            ) -> tuple[tuple[AsyncIterator[ChatChunk], ChatChunk], Measured]:
                assert plan.tail_node is not None
                stream = self.clients[plan.tail_node].chat_stream(
                    plan.model, msgs, max_tokens, **extra
                )
                first: ChatChunk = await self._node_call(plan.tail_node, plan.link, anext(stream))
                return (stream, first), Measured()

            executed = await self._plan_and_run(
                pending, table, options, open_stream, self._chat_bound(prompt_tokens, max_tokens)
            )
        except TierwiseError as exc:
            await self._record_failure(pending, exc)
            raise
        headers = {"X-Tierwise-Request-Id": pending.id, "X-Tierwise-Plan": executed.plan.id}
        return self._relay(pending, executed, body), headers

    async def _relay(
        self, pending: Pending, executed: Executed[Any], body: oa.ChatCompletionRequest
    ) -> AsyncIterator[bytes]:
        stream, chunk = executed.result
        plan = executed.plan
        cid, created = oa.new_completion_id(), int(time.time())
        started = time.perf_counter() - (executed.measured.latency_s or 0.0)
        yield _sse(
            oa.chunk_json(cid, plan.model, {"role": "assistant", "content": ""}, None, created)
        )
        try:
            while chunk.usage is None:
                if chunk.text:
                    yield _sse(
                        oa.chunk_json(cid, plan.model, {"content": chunk.text}, None, created)
                    )
                chunk = await anext(stream)
        except (UpstreamError, StopAsyncIteration) as exc:
            await run_in_threadpool(self.ledger.settle, executed.reservation, 0.0)
            await self._record_failure(pending, UpstreamError(f"the stream broke off: {exc}"))
            yield _sse(
                {"error": {"message": "the upstream stream broke off", "type": "server_error"}}
            )
            yield b"data: [DONE]\n\n"
            return
        meta = chunk.meta or {}
        measured = self._chat_measured(
            plan,
            chunk.usage,
            meta,
            int(meta.get("bytes_up", 0)),
            int(meta.get("bytes_down", 0)),
            time.perf_counter() - started,
        )
        executed.measured = measured
        executed.usd, executed.joules = plan_cost(self.spec, plan, measured)
        served = await self._finish(pending, executed, {})
        yield _sse(oa.chunk_json(cid, plan.model, {}, chunk.finish_reason, created))
        if body.wants_usage_in_stream:
            yield _sse(
                oa.usage_chunk_json(cid, plan.model, chunk.usage, created, served.body["tierwise"])
            )
        yield b"data: [DONE]\n\n"

    # -- shared: plan, run, record ------------------------------------------------------

    async def _plan_and_run(
        self,
        pending: Pending,
        table: PlanTable,
        options: RequestOptions,
        run_one: Any,
        bound_of: Callable[[Plan, float], float],
    ) -> Executed[Any]:
        policy = options.policy.over(pending.caller.policy.over(self.gw.policy))
        scopes = self._scopes(pending.caller.name, pending.created_at)
        budget_ok = await run_in_threadpool(self._budget_left, scopes)
        pending.policy, pending.budget_ok = policy, budget_ok
        started = time.perf_counter()
        live = self.live.state(table)
        decision = decide(table, live, policy, budget_ok)
        self.metrics.planner.observe(time.perf_counter() - started)
        pending.decision = decision
        explained = decision.explain(policy, budget_ok, live)
        pending.explain["considered"] = explained
        order = self._order(table, decision, options.pinned_plan, explained)
        executed = await self.executor.run(
            table, order, decision.latency, scopes, run_one, bound_of
        )
        if len(executed.attempts) > 1:
            self.metrics.fallbacks.inc(len(executed.attempts) - 1)
        return executed

    def _order(
        self,
        table: PlanTable,
        decision: Decision,
        pinned: str | None,
        explained: list[dict[str, Any]],
    ) -> list[int]:
        """The plans to try: the decision's, or just the pinned one (no fallback)."""
        if pinned is None:
            return self.executor.attempt_order(table, decision.ranking)
        ids = [p.id for p in table.plans]
        if pinned not in ids:
            raise NotFoundError(f"no plan {pinned!r} for this request; plans: {ids}", param="plan")
        index = ids.index(pinned)
        if not decision.hard_ok[index]:
            why = explained[index]["excluded"]
            raise NotFoundError(f"plan {pinned!r} cannot run now: {why}", param="plan")
        return [index]

    def _scopes(self, key: str, now: float) -> list[BudgetScope]:
        day, month = periods(now)
        scopes = []
        for scope, budget in (("global", self.gw.budget), (f"key:{key}", self._key_budget(key))):
            if budget.daily_usd is not None:
                scopes.append(BudgetScope(scope, day, budget.daily_usd))
            if budget.monthly_usd is not None:
                scopes.append(BudgetScope(scope, month, budget.monthly_usd))
        return scopes

    def _key_budget(self, key: str) -> BudgetSpec:
        return next((k.budget for k in self.gw.api_keys if k.name == key), BudgetSpec())

    def _budget_left(self, scopes: list[BudgetScope]) -> bool:
        ok = True
        for scope in scopes:
            spent, reserved = self.ledger.usage(scope)
            left = scope.limit_usd - spent - reserved
            self.metrics.budget_remaining.labels(scope=scope.scope, period=scope.period).set(left)
            ok = ok and left > 0
        return ok

    async def _finish(
        self, pending: Pending, executed: Executed[Any], body: dict[str, Any]
    ) -> Served:
        decision = pending.decision
        assert decision is not None
        i, plan, m = executed.index, executed.plan, executed.measured
        offline = not plan.remote and self.live.offline()
        ext = {
            "request_id": pending.id,
            "plan": plan.id,
            "tiers": list(plan.tiers),
            "offline": offline,
            "relaxed": decision.relaxed,
            "attempts": [a.__dict__ for a in executed.attempts],
            "predicted": _predicted(decision, i),
            "measured": {
                "latency_ms": round(m.latency_s * 1e3, 3),
                "usd": executed.usd,
                "joules": round(executed.joules, 4),
                "bytes_up": m.bytes_up,
                "bytes_down": m.bytes_down,
            },
        }
        record = self._record(pending, plan.id, ",".join(plan.tiers), "ok")
        record.tokens_in, record.tokens_out = m.tokens_in, m.tokens_out
        record.bytes_up, record.bytes_down = m.bytes_up, m.bytes_down
        record.latency_ms, record.usd, record.joules = (
            m.latency_s * 1e3,
            executed.usd,
            executed.joules,
        )
        record.predicted_latency_ms = float(decision.latency[i] * 1e3)
        record.predicted_usd, record.predicted_joules = (
            float(decision.usd[i]),
            float(decision.joules[i]),
        )
        record.cloud_usd = self._cloud_usd(decision, executed)
        record.quality = (
            None if np.isnan(decision.table.quality[i]) else float(decision.table.quality[i])
        )
        record.offline, record.attempts = offline, len(executed.attempts)
        record.explain = {
            **pending.explain,
            "relaxed": decision.relaxed,
            "attempts": ext["attempts"],
        }
        await run_in_threadpool(self.ledger.record, record, executed.reservation, executed.usd)
        self._count(record, plan)
        body = {**body, "tierwise": ext}
        return Served(body, _headers(ext))

    def _cloud_usd(self, decision: Decision, executed: Executed[Any]) -> float:
        """What the same request would have cost all in the cloud (the cheapest cloud plan)."""
        cloud = [i for i, p in enumerate(decision.table.plans) if p.tiers == ("cloud",)]
        if not cloud:
            return executed.usd
        if executed.plan.task == "chat":
            m = executed.measured
            plans = [decision.table.plans[i] for i in cloud]
            tokens = {p.model: m.tokens_in for p in plans}
            table = build_chat_table(
                self.spec, plans, self.profiles, tokens, m.tokens_out, exact_tokens=True
            )
            costs = [u for u, ok in zip(table.usd, table.profiled, strict=True) if ok]
            return float(min(costs)) if costs else executed.usd
        return float(min(decision.usd[i] for i in cloud))

    def _record(self, pending: Pending, plan: str, tiers: str, status: str) -> RequestRecord:
        return RequestRecord(
            id=pending.id,
            created_at=pending.created_at,
            api_key=pending.caller.name,
            task=pending.task,
            model=pending.model,
            plan=plan,
            tiers=tiers,
            status=status,
        )

    async def _record_failure(self, pending: Pending, exc: TierwiseError) -> None:
        status = "rejected" if exc.http_status < 500 else "error"
        record = self._record(pending, "-", "", status)
        record.error = f"{exc.code}: {exc.message}"
        record.offline = self.live.offline()
        record.explain = {**pending.explain, "error": exc.message}
        with contextlib.suppress(Exception):  # never mask the request's own error
            await run_in_threadpool(self.ledger.record, record)
        self.metrics.requests.labels(
            task=pending.task, tier="-", model=pending.model, status=status
        ).inc()

    def _count(self, record: RequestRecord, plan: Plan) -> None:
        tier = plan.tiers[-1]
        mm = self.metrics
        mm.requests.labels(task=record.task, tier=tier, model=plan.model, status="ok").inc()
        mm.latency.labels(task=record.task, tier=tier, model=plan.model).observe(
            record.latency_ms / 1e3
        )
        mm.usd.labels(tier=tier, model=plan.model).inc(record.usd)
        mm.joules.labels(tier=tier, model=plan.model).inc(record.joules)
        mm.tokens.labels(tier=tier, model=plan.model, kind="in").inc(record.tokens_in)
        mm.tokens.labels(tier=tier, model=plan.model, kind="out").inc(record.tokens_out)
        mm.bytes.labels(direction="up").inc(record.bytes_up)
        mm.bytes.labels(direction="down").inc(record.bytes_down)
        mm.plans.labels(plan=plan.id).inc()


def _chat_params(body: oa.ChatCompletionRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed"):
        value = getattr(body, name)
        if value is not None:
            extra[name] = value
    if body.stop:
        extra["stop"] = body.stop
    return extra


def _logits(reply: PayloadReply) -> np.ndarray:
    return decode_message(wire.decode_tensor(reply.payload))


def _top_k(logits: np.ndarray, k: int) -> list[dict[str, Any]]:
    row = logits.astype(np.float64)
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    names = imagenet_labels()
    return [
        {"label": names[i], "index": int(i), "probability": float(probs[i])}
        for i in np.argsort(-probs)[:k]
    ]


def _predicted(decision: Decision, i: int) -> dict[str, Any]:
    t = decision.table
    return {
        "latency_ms": round(float(decision.latency[i]) * 1e3, 3),
        "usd": float(decision.usd[i]),
        "joules": round(float(decision.joules[i]), 4),
        "bytes_up": int(t.bytes_up[i]),
        "bytes_down": int(t.bytes_down[i]),
        "quality": None if np.isnan(t.quality[i]) else round(float(t.quality[i]), 4),
    }


def _headers(ext: dict[str, Any]) -> dict[str, str]:
    m, p = ext["measured"], ext["predicted"]
    cost = (
        f"latency_ms={m['latency_ms']}; usd={m['usd']:.9f}; joules={m['joules']}; "
        f"bytes_up={m['bytes_up']}; bytes_down={m['bytes_down']}; "
        f"predicted_latency_ms={p['latency_ms']}; predicted_usd={p['usd']:.9f}"
    )
    return {
        "X-Tierwise-Request-Id": ext["request_id"],
        "X-Tierwise-Plan": ext["plan"],
        "X-Tierwise-Tiers": ",".join(ext["tiers"]),
        "X-Tierwise-Cost": cost,
        "X-Tierwise-Offline": "true" if ext["offline"] else "false",
    }


def _sse(obj: dict[str, Any]) -> bytes:
    import json

    return f"data: {json.dumps(obj)}\n\n".encode()
