"""Chat requests: the answerers composed in one place, and the door they come in by.

The chain, outermost first (each wraps the next, and each is one concern):

    CachedChat   a semantic-cache hit answers at once; a miss is kept once answered
    CascadeChat  "auto" with cascade_confidence: the device's model first, escalate if unsure
    PrivateChat  the policy narrowed to what the prompt's content needs; PII masked
    PlannedChat  plan the request and ask a node

The cache sits outside the cascade so a hit skips both of its steps; privacy sits inside
it, so each step is narrowed for itself.
"""

from __future__ import annotations

from tierwise.gateway.chat.answering import ChatAnswerer, ChatCall, Streamed
from tierwise.gateway.chat.cache import CachedChat
from tierwise.gateway.chat.cascade import CascadeChat
from tierwise.gateway.chat.planned import PlannedChat
from tierwise.gateway.chat.planning import ChatPlanning
from tierwise.gateway.chat.privacy import PrivateChat
from tierwise.gateway.keys import Caller
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.placement.plans import Plan, chat_plans
from tierwise.runtime import openai_schema as oa


class ChatService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._planning = ChatPlanning(pipeline.shared)
        shared = pipeline.shared
        answerer: ChatAnswerer = PlannedChat(pipeline, self._planning)
        answerer = PrivateChat(answerer)
        answerer = CascadeChat(answerer, self._all_plans, shared.live)
        self._answerer: ChatAnswerer = CachedChat(answerer, shared.recorder)

    def load(self) -> None:
        """Tokenizers and the router: at start, not on the first request."""
        self._planning.load()

    def close(self) -> None:
        self._planning.close()

    def models(self) -> list[str]:
        return self._planning.models()

    async def complete(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> Served:
        return await self._answerer.complete(self._call(caller, body, options))

    async def stream(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> Streamed:
        """A streamed answer; the server must call its ``close()`` once the response is
        over, so a stream whose client left is recorded and its hold released."""
        return await self._answerer.stream(self._call(caller, body, options))

    def _call(
        self, caller: Caller, body: oa.ChatCompletionRequest, options: RequestOptions
    ) -> ChatCall:
        policy = self._pipeline.policy_for(caller, options)
        pending = Pending.new(caller, "chat", body.model, policy, options.run_id)
        return ChatCall(caller, body, options.pinned_plan, pending, policy)

    def _all_plans(self) -> list[Plan]:
        shared = self._pipeline.shared
        return chat_plans(shared.spec, self.models(), shared.gw.tier)
