"""The chat service's use of the semantic cache: look up before planning, keep after.

A hit is answered at once, recorded in the ledger as a request that cost $0 (plan
``cache``) with the original answer's all-cloud price as what it would have cost, so the
report counts it as savings. The encoder loads on the first request of a key that opted in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from tierwise.gateway.keys import Caller
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.semantic_cache import CachedAnswer, Hit, SemanticCache, request_keys
from tierwise.models.base import Usage
from tierwise.runtime import openai_schema as oa

if TYPE_CHECKING:
    from tierwise.gateway.service import Gateway


@dataclass(frozen=True)
class Lookup:
    """What a request's cache keys are, and what was found (None: a miss or cache off)."""

    exact: str
    context: str
    last: str
    hit: Hit | None


class AnswerCache:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self._cache: SemanticCache | None = None

    async def _store(self) -> SemanticCache:
        if self._cache is None:
            from tierwise.routing.features import MiniLMEncoder

            encoder = await run_in_threadpool(MiniLMEncoder)
            self._cache = SemanticCache(encoder.encode)
        return self._cache

    async def find(
        self,
        caller: Caller,
        messages: list[dict[str, str]],
        model: str,
        params: dict[str, Any],
        policy: dict[str, Any],
    ) -> Lookup | None:
        if not caller.cache.enabled or not messages:
            return None
        exact, context = request_keys(model, messages, params, policy)
        last = messages[-1]["content"]
        cache = await self._store()
        hit = await run_in_threadpool(cache.lookup, caller.name, caller.cache, exact, context, last)
        return Lookup(exact, context, last, hit)

    async def keep(self, caller: Caller, lookup: Lookup | None, answer: CachedAnswer) -> None:
        if lookup is None or lookup.hit is not None:
            return
        cache = await self._store()
        await run_in_threadpool(
            cache.store,
            caller.name,
            caller.cache,
            lookup.exact,
            lookup.context,
            lookup.last,
            answer,
        )

    async def answer(self, pending: Pending, hit: Hit) -> Served:
        body = oa.completion_json(
            oa.new_completion_id(),
            hit.answer.model,
            hit.answer.text,
            hit.answer.finish_reason,
            Usage(0, 0),
            {},
        )
        return await self.core.recorder.cache_hit(pending, hit, body)
