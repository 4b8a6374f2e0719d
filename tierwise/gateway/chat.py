"""Chat: placing an OpenAI chat request on a node that hosts a chat model.

Prompts are counted with each model's own tokenizer (a vocab-only llama.cpp load) to
predict costs; the node's own ``usage`` is what gets recorded. A streamed answer may fall
back to another plan until its first token arrives, and is recorded when its last token
is in, before the final usage chunk goes out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from tierwise.config import (
    CifarNetModel,
    EfficientNetLiteModel,
    LlamaCppModel,
    OpenAIRemoteModel,
    Policy,
)
from tierwise.errors import (
    ConfigError,
    InputError,
    NoFeasiblePlan,
    NotFoundError,
    TierwiseError,
    UpstreamError,
)
from tierwise.gateway.answer_cache import AnswerCache, Lookup
from tierwise.gateway.chat_cascade import ChatCascade, is_remote
from tierwise.gateway.executor import Executed
from tierwise.gateway.keys import Caller
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.semantic_cache import CachedAnswer
from tierwise.ledger.costing import Measured, cost_bound, plan_cost
from tierwise.models.base import ChatChunk, ChatMessage, Usage
from tierwise.models.openai_tokens import count_chat_tokens
from tierwise.placement.cost import PlanTable, build_chat_table
from tierwise.placement.plans import Plan, chat_plans
from tierwise.privacy.pii import Redactor, find_pii, kinds
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.node_client import ChatReply

if TYPE_CHECKING:
    from tierwise.gateway.service import Gateway
    from tierwise.routing.router import Router

Opened = tuple[AsyncIterator[ChatChunk], ChatChunk]
PlanFilter = Callable[[Plan], bool]


@dataclass(frozen=True)
class _Ask:
    """What to ask a chat node: the messages and the request's sampling options."""

    messages: list[dict[str, str]]
    max_tokens: int
    extra: dict[str, Any]
    redactor: Redactor | None = None  # set when PII must be masked before leaving

    def for_plan(self, plan: Plan) -> _Ask:
        """Remote plans get the masked conversation; local ones the original."""
        if self.redactor is None or plan.link is None:
            return self
        masked = [{**m, "content": self.redactor.mask(m["content"])} for m in self.messages]
        return _Ask(masked, self.max_tokens, self.extra, self.redactor)


def _stream_headers(pending: Pending, executed: Executed[Any]) -> dict[str, str]:
    return {"X-Tierwise-Request-Id": pending.id, "X-Tierwise-Plan": executed.plan.id}


def _cached(served: Served) -> CachedAnswer:
    """What the cache keeps of an answer: its text and what it cost."""
    choice, ext = served.body["choices"][0], served.body["tierwise"]
    return CachedAnswer(
        choice["message"]["content"],
        choice["finish_reason"],
        served.body["model"],
        ext["request_id"],
        served.cloud_usd,
        ext["measured"]["usd"],
    )


def replay_sse(completion: dict[str, Any], wants_usage: bool) -> AsyncIterator[bytes]:
    """A whole answer (from the cache or an accepted cascade step) as an SSE stream."""

    async def events() -> AsyncIterator[bytes]:
        cid, created, model = completion["id"], int(time.time()), completion["model"]
        choice = completion["choices"][0]
        yield oa.sse(oa.chunk_json(cid, model, {"role": "assistant", "content": ""}, None, created))
        yield oa.sse(
            oa.chunk_json(cid, model, {"content": choice["message"]["content"]}, None, created)
        )
        yield oa.sse(oa.chunk_json(cid, model, {}, choice["finish_reason"], created))
        if wants_usage:
            u = completion["usage"]
            usage = Usage(u["prompt_tokens"], u["completion_tokens"])
            yield oa.sse(oa.usage_chunk_json(cid, model, usage, created, completion["tierwise"]))
        yield oa.SSE_DONE

    return events()


@dataclass
class _Keep:
    """What a streamed answer needs to be cached once it is complete."""

    caller: Caller
    lookup: Lookup | None
    text: list[str] = field(default_factory=list)


def _pending(caller: Caller, body: oa.ChatCompletionRequest) -> Pending:
    return Pending(uuid.uuid4().hex, time.time(), caller, "chat", body.model)


def _privacy(
    policy: Policy, messages: list[dict[str, str]], pending: Pending
) -> tuple[Policy, Redactor | None]:
    """Narrow the policy to what this prompt's content needs; note what was found.

    Without PII, ``pii-stays-local`` and ``redact`` have nothing to protect and the prompt
    may go anywhere. With PII, the first keeps it on the device and the second masks it.
    """
    found = kinds([f for m in messages for f in find_pii(m["content"])])
    if policy.privacy in ("pii-stays-local", "redact") and not found:
        return policy.model_copy(update={"privacy": "any"}), None
    if not found:
        return policy, None
    if policy.privacy == "pii-stays-local":
        pending.notes["privacy"] = {"pii": found, "action": "kept-on-device"}
        return policy.model_copy(update={"privacy": "raw-stays-local"}), None
    if policy.privacy == "redact":
        pending.notes["privacy"] = {"pii": found, "action": "masked-if-sent"}
        return policy.model_copy(update={"privacy": "any"}), Redactor.new()
    pending.notes["privacy"] = {"pii": found, "action": "none"}
    return policy, None


class ChatService:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self.tokenizers: dict[str, Any] = {}
        self.cache = AnswerCache(core)
        self.cascade = ChatCascade(self)
        self.router: Router | None = None

    def load_router(self) -> None:
        """The learned router named in the spec, checked against the models it maps."""
        spec = self.core.gw.router
        if spec is None:
            return
        from tierwise.routing.router import Router

        try:
            router = Router.load(Path(spec.path))
        except TierwiseError as exc:
            raise ConfigError(f"gateway.router.path: {exc.message}") from exc
        unknown = sorted(set(spec.models.values()) - set(router.models))
        if unknown:
            raise ConfigError(
                f"gateway.router.models: {unknown} are not models of the router at {spec.path}; "
                f"it knows {router.models}"
            )
        router.encoder.prepare()  # load now, not on the first request
        self.router = router

    def predicted_quality(self, body: oa.ChatCompletionRequest) -> dict[str, float]:
        """Per cluster model, the router's chance of a right answer to this prompt."""
        spec = self.core.gw.router
        if self.router is None or spec is None or body.model != "auto":
            return {}
        messages = body.to_messages()
        users = [m.content for m in messages if m.role == "user"] or [messages[-1].content]
        p = self.router.predict([users[-1]])[0]
        column = {m: i for i, m in enumerate(self.router.models)}
        return {ours: float(p[column[theirs]]) for ours, theirs in spec.models.items()}

    def load_tokenizers(self) -> None:
        from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf

        for name, spec in self.core.spec.models.items():
            if isinstance(spec, LlamaCppModel):
                path = resolve_gguf(spec.gguf)
                self.tokenizers[name] = LlamaCppChat(name, path, spec.n_ctx, 1, 1, vocab_only=True)

    def close(self) -> None:
        for tokenizer in self.tokenizers.values():
            tokenizer.close()

    def models(self) -> list[str]:
        spec = self.core.spec
        hosted = {m for n in spec.nodes for m in n.models}
        return [
            name
            for name, model in spec.models.items()
            if name in hosted and not isinstance(model, EfficientNetLiteModel | CifarNetModel)
        ]

    # -- answering -----------------------------------------------------------------

    async def complete(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> Served:
        """Cache, then the cascade when the policy asks for one, else plan and answer."""
        pending = _pending(caller, body)
        lookup = await self._lookup(caller, body, options)
        if lookup is not None and lookup.hit is not None:
            return await self.cache.answer(pending, lookup.hit)
        threshold = self.cascade.threshold(body, self.core.policy_for(caller, options))
        if threshold is not None:
            served = await self.cascade.complete(pending, body, options, threshold)
        else:
            executed, redactor = await self._execute(pending, body, options, self._answer)
            served = await self.served_answer(pending, executed, redactor)
        await self.cache.keep(caller, lookup, _cached(served))
        return served

    async def served_answer(
        self, pending: Pending, executed: Executed[Any], redactor: Redactor | None
    ) -> Served:
        """Record a whole (non-streamed) answer and build its OpenAI body."""
        reply: ChatReply = executed.result
        text = redactor.restore(reply.text) if redactor else reply.text
        answer = oa.completion_json(
            oa.new_completion_id(),
            executed.plan.model,
            text,
            reply.finish_reason,
            reply.usage,
            {},
        )
        return await self.core.recorder.served(pending, executed, answer)

    async def stream(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> tuple[AsyncIterator[bytes], dict[str, str]]:
        """Plan, open the stream (falling back until a first token arrives), then relay."""
        pending = _pending(caller, body)
        lookup = await self._lookup(caller, body, options)
        if lookup is not None and lookup.hit is not None:
            served = await self.cache.answer(pending, lookup.hit)
            return replay_sse(served.body, body.wants_usage_in_stream), served.headers
        keep = _Keep(caller, lookup)
        threshold = self.cascade.threshold(body, self.core.policy_for(caller, options))
        if threshold is not None:
            first = await self.cascade.first_step(pending, body, options, threshold)
            if not first.kept:
                try:
                    executed, redactor = await self._execute(
                        first.next_pending, body, options, self._open, is_remote
                    )
                except TierwiseError as exc:
                    first.fallback(exc, self.core.live.offline())
                else:
                    events = self._relay(first.next_pending, executed, body, redactor, keep)
                    return events, _stream_headers(first.next_pending, executed)
            await self.cache.keep(caller, lookup, _cached(first.served))
            return replay_sse(first.served.body, body.wants_usage_in_stream), first.served.headers
        executed, redactor = await self._execute(pending, body, options, self._open)
        return self._relay(pending, executed, body, redactor, keep), _stream_headers(
            pending, executed
        )

    async def _lookup(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> Lookup | None:
        if not caller.cache.enabled:
            return None
        messages = [{"role": m.role, "content": m.content} for m in body.to_messages()]
        params = {**_chat_params(body), "max_tokens": body.max_completion_tokens or body.max_tokens}
        policy = self.core.policy_for(caller, options).model_dump(mode="json")
        return await self.cache.find(caller, messages, body.model, params, policy)

    async def _execute(
        self,
        pending: Pending,
        body: oa.ChatCompletionRequest,
        options: RequestOptions,
        attempt: Callable[[Plan, str, _Ask], Awaitable[tuple[Any, Measured]]],
        only: PlanFilter | None = None,
    ) -> tuple[Executed[Any], Redactor | None]:
        """What answering and streaming share: plan, try plans in turn, record failures.

        ``only`` narrows the candidate plans (the cascade's local first step, say).
        """
        caller = pending.caller
        try:
            table, msgs, max_tokens, prompt_tokens = self._setup(body, only)
            if quality := self.predicted_quality(body):
                pending.notes["router"] = {m: round(q, 4) for m, q in quality.items()}
                for i, plan in enumerate(table.plans):
                    table.quality[i] = quality.get(plan.model, table.quality[i])
            policy, redactor = _privacy(self.core.policy_for(caller, options), msgs, pending)
            ask = _Ask(msgs, max_tokens, _chat_params(body), redactor)

            async def run_one(plan: Plan, _: float) -> tuple[Any, Measured]:
                assert plan.tail_node is not None
                return await attempt(plan, plan.tail_node, ask.for_plan(plan))

            bound = self._bound(prompt_tokens, max_tokens)
            executed = await self.core.plan_and_run(pending, table, options, run_one, bound, policy)
            if redactor is not None:
                masked = executed.plan.link is not None
                pending.notes["privacy"]["action"] = "masked" if masked else "stayed-on-device"
                return executed, redactor if masked else None
        except TierwiseError as exc:
            await self.core.recorder.failed(pending, exc)
            raise
        return executed, None

    async def _answer(self, plan: Plan, node: str, ask: _Ask) -> tuple[ChatReply, Measured]:
        call = self.core.clients[node].chat(plan.model, ask.messages, ask.max_tokens, **ask.extra)
        reply: ChatReply = await self.core.node_call(node, plan.link, call)
        t = reply.transfer
        measured = self._measured(plan, reply.usage, reply.ext, t.bytes_up, t.bytes_down, t.seconds)
        return reply, measured

    async def _open(self, plan: Plan, node: str, ask: _Ask) -> tuple[Opened, Measured]:
        client = self.core.clients[node]
        stream = client.chat_stream(plan.model, ask.messages, ask.max_tokens, **ask.extra)
        first: ChatChunk = await self.core.node_call(node, plan.link, anext(stream))
        return (stream, first), Measured()

    async def _relay(
        self,
        pending: Pending,
        executed: Executed[Any],
        body: oa.ChatCompletionRequest,
        redactor: Redactor | None,
        keep: _Keep,
    ) -> AsyncIterator[bytes]:
        stream, chunk = executed.result
        plan = executed.plan
        cid, created = oa.new_completion_id(), int(time.time())
        started = time.perf_counter() - (executed.measured.latency_s or 0.0)
        restorer = redactor.streaming() if redactor else None
        yield oa.sse(
            oa.chunk_json(cid, plan.model, {"role": "assistant", "content": ""}, None, created)
        )
        try:
            while chunk.usage is None:
                text = restorer.feed(chunk.text) if restorer else chunk.text
                keep.text.append(text)
                if text:
                    yield oa.sse(oa.chunk_json(cid, plan.model, {"content": text}, None, created))
                chunk = await anext(stream)
            if restorer and (rest := restorer.flush()):
                keep.text.append(rest)
                yield oa.sse(oa.chunk_json(cid, plan.model, {"content": rest}, None, created))
        except (UpstreamError, StopAsyncIteration) as exc:
            await run_in_threadpool(self.core.ledger.settle, executed.reservation, 0.0)
            await self.core.recorder.failed(pending, UpstreamError(f"the stream broke off: {exc}"))
            yield oa.sse(
                {"error": {"message": "the upstream stream broke off", "type": "server_error"}}
            )
            yield oa.SSE_DONE
            return
        meta = chunk.meta or {}
        up, down = int(meta.get("bytes_up", 0)), int(meta.get("bytes_down", 0))
        executed.measured = self._measured(
            plan, chunk.usage, meta, up, down, time.perf_counter() - started
        )
        executed.usd, executed.joules = plan_cost(self.core.spec, plan, executed.measured)
        served = await self.core.recorder.served(pending, executed, {})
        kept = CachedAnswer(
            "".join(keep.text),
            chunk.finish_reason or "stop",
            plan.model,
            pending.id,
            served.cloud_usd,
            executed.usd,
        )
        await self.cache.keep(keep.caller, keep.lookup, kept)
        yield oa.sse(oa.chunk_json(cid, plan.model, {}, chunk.finish_reason, created))
        if body.wants_usage_in_stream:
            ext = served.body["tierwise"]
            yield oa.sse(oa.usage_chunk_json(cid, plan.model, chunk.usage, created, ext))
        yield oa.SSE_DONE

    # -- planning inputs -------------------------------------------------------------

    def _setup(
        self, body: oa.ChatCompletionRequest, only: PlanFilter | None = None
    ) -> tuple[PlanTable, list[dict[str, str]], int, dict[str, int]]:
        known = self.models()
        if body.model != "auto" and body.model not in known:
            raise NotFoundError(
                f"no chat model {body.model!r}; models: {['auto', *known]}", param="model"
            )
        models = known if body.model == "auto" else [body.model]
        messages = body.to_messages()
        prompt_tokens = {m: self._count_prompt(m, messages) for m in models}
        asked = body.max_completion_tokens or body.max_tokens
        models, max_tokens = self._fitting(models, prompt_tokens, asked)
        plans = [
            p
            for p in chat_plans(self.core.spec, models, self.core.gw.tier)
            if only is None or only(p)
        ]
        if not plans:
            raise NoFeasiblePlan(f"no chat plan for {body.model!r} on the tiers asked for")
        table = build_chat_table(
            self.core.spec, plans, self.core.profiles, prompt_tokens, max_tokens
        )
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return table, msgs, max_tokens, prompt_tokens

    def _fitting(
        self, models: list[str], prompt_tokens: dict[str, int], asked: int | None
    ) -> tuple[list[str], int]:
        """Models whose context window holds the prompt plus the answer asked for.

        Without ``max_tokens`` the answer gets up to 256 tokens, fewer if the window is
        nearly full; an explicit ``max_tokens`` that does not fit is refused, not cut.
        """
        fit, why = [], []
        room = []
        for m in models:
            spec = self.core.spec.models[m]
            limit = spec.n_ctx if isinstance(spec, LlamaCppModel) else None
            free = None if limit is None else limit - prompt_tokens[m]
            if free is not None and (free < 1 or (asked is not None and asked > free)):
                why.append(
                    f"{m}'s context window holds {limit} tokens; the prompt takes "
                    f"{prompt_tokens[m]}" + (f" and max_tokens asks {asked} more" if asked else "")
                )
                continue
            fit.append(m)
            room.append(free)
        if not fit:
            raise InputError(
                "the request does not fit the context window: " + "; ".join(why),
                param="messages" if asked is None else "max_tokens",
            )
        if asked is not None:
            return fit, asked
        return fit, min([256] + [r for r in room if r is not None])

    def _count_prompt(self, model: str, messages: list[ChatMessage]) -> int:
        tokenizer = self.tokenizers.get(model)
        if tokenizer is not None:
            return len(tokenizer.prompt_tokens(messages))
        spec = self.core.spec.models[model]
        if isinstance(spec, OpenAIRemoteModel):
            counted = count_chat_tokens(spec.remote_model, messages)
            if counted is not None:
                return counted
        return sum(len(m.content) for m in messages) // 4 + 8  # no tokenizer: an estimate

    def _bound(
        self, prompt_tokens: dict[str, int], max_tokens: int
    ) -> Callable[[Plan, float], float]:
        spec = self.core.spec

        def bound(plan: Plan, timeout: float) -> float:
            tin = prompt_tokens.get(plan.model, 0)
            return cost_bound(
                spec, plan, timeout, 8 * tin + 4096, 16 * max_tokens + 4096, tin, max_tokens
            )

        return bound

    # -- what an answer teaches --------------------------------------------------------

    def _measured(
        self, plan: Plan, usage: Usage, ext: dict[str, Any], up: int, down: int, seconds: float
    ) -> Measured:
        assert plan.tail_node is not None
        compute_s = float(ext.get("compute_ms", 0.0)) / 1e3
        self.core.live.node_served(plan.tail_node, compute_s)
        if plan.link is not None:
            self.core.live.observe(plan.link, up + down, seconds, compute_s)
        self._learn(plan, usage, compute_s)
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

    def _learn(self, plan: Plan, usage: Usage, compute_s: float) -> None:
        profiles, node, model = self.core.profiles, plan.tail_node or "", plan.model
        profiles.observe(node, model, "llm:completion_tokens", usage.completion_tokens)
        prefill = profiles.get(node, model, "llm:prefill_tok_s")
        overhead = (profiles.get(node, model, "llm:overhead_ms") or 0.0) / 1e3
        if prefill and usage.completion_tokens > 4:
            decode_s = compute_s - overhead - usage.prompt_tokens / prefill
            if decode_s > 0:
                profiles.observe(
                    node, model, "llm:decode_tok_s", usage.completion_tokens / decode_s
                )


def _chat_params(body: oa.ChatCompletionRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed"):
        value = getattr(body, name)
        if value is not None:
            extra[name] = value
    if body.stop:
        extra["stop"] = body.stop
    return extra
