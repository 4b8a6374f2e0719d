"""Sentence embeddings (``POST /v1/embeddings``), placed like any other request.

The texts are like a chat prompt to the planner: under ``raw-stays-local`` and
``features-may-leave`` they stay on the device. Under ``pii-stays-local`` and ``redact``
texts without personal data may go anywhere; texts with it stay on the device, for an
embedding of a masked text would be another vector, not the one asked for.
"""

from __future__ import annotations

import json
from typing import Any

from tierwise.config import Policy
from tierwise.gateway.keys import Caller
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.whole.calls import WholeCalls, WholeRequest
from tierwise.privacy.pii import find_pii, kinds
from tierwise.runtime.node_client import EmbedReply, NodeClient
from tierwise.runtime.whole_schema import EmbeddingsRequest, embeddings_json


class EmbeddingService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.calls = WholeCalls(pipeline, "embedding", "embed", "prompt")

    def models(self) -> list[str]:
        return self.calls.models()

    async def embed(
        self, caller: Caller, body: EmbeddingsRequest, options: RequestOptions
    ) -> Served:
        policy = self._pipeline.policy_for(caller, options)
        pending = Pending.new(caller, "embed", body.model, policy, options.run_id)

        def prepare() -> WholeRequest[EmbedReply]:
            model, texts = self.calls.check_model(body.model), body.texts()
            body.encoding()  # a bad encoding_format is refused before anything runs (400)

            async def ask(client: NodeClient, name: str) -> EmbedReply:
                return await client.embeddings(name, texts)

            wire = {"model": model, "input": texts, "encoding_format": "base64"}
            size = len(json.dumps(wire, ensure_ascii=False).encode())
            narrowed = _narrowed(pending, policy, texts)
            return WholeRequest(
                model, narrowed, options.pinned_plan, len(texts), size, ask, _tokens
            )

        def answer(reply: EmbedReply) -> dict[str, Any]:
            fmt = body.encoding()
            return embeddings_json(body.model, reply.vectors, reply.tokens, fmt, {})

        return await self.calls.serve(pending, prepare, answer)


def _tokens(reply: EmbedReply) -> int:
    return reply.tokens


def _narrowed(pending: Pending, policy: Policy, texts: list[str]) -> Policy:
    """The policy the texts' content needs; what was found is noted by kind only."""
    found = kinds([f for text in texts for f in find_pii(text)])
    if policy.privacy in ("pii-stays-local", "redact"):
        if not found:
            return policy.model_copy(update={"privacy": "any"})
        pending.notes["privacy"] = {"pii": found, "action": "kept-on-device"}
        return policy.model_copy(update={"privacy": "raw-stays-local"})
    if found:
        pending.notes["privacy"] = {"pii": found, "action": "none"}
    return policy
