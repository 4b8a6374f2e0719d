"""Visual question answering (``POST /v1/vision/vqa``), placed like any other request.

The image is raw input: under ``raw-stays-local`` (and ``pii-stays-local``, ``redact``
and ``features-may-leave``, since a picture cannot be checked for personal data) only
a node on the device may answer. The model is our easy-vqa network, a toy domain of
coloured shapes; every answer carries the node's note that says so.
"""

from __future__ import annotations

from typing import Any

from tierwise.errors import TierwiseError
from tierwise.gateway.keys import Caller
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.whole.calls import WholeCalls, WholeRequest
from tierwise.runtime.images import decode_image_async
from tierwise.runtime.node_client import NodeClient, VqaReply
from tierwise.runtime.whole_schema import checked_question

#: the query string's share of a VQA call's request bytes, besides the question
_URL_BYTES = 64


class VqaService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.calls = WholeCalls(pipeline, "vqa", "vqa", "raw")

    def models(self) -> list[str]:
        return self.calls.models()

    async def answer(
        self,
        caller: Caller,
        image: bytes,
        question: str | None,
        model: str,
        options: RequestOptions,
    ) -> Served:
        policy = self._pipeline.policy_for(caller, options)
        pending = Pending.new(caller, "vqa", model, policy, options.run_id)
        try:
            self.calls.check_model(model), checked_question(question)
            # refused here, before any node is asked, and decoded off the event loop
            await decode_image_async(image, param="image")
        except TierwiseError as exc:
            await self._pipeline.shared.recorder.failed(pending, exc)
            raise

        def prepare() -> WholeRequest[VqaReply]:
            name, asked = self.calls.check_model(model), checked_question(question)

            async def ask(client: NodeClient, served: str) -> VqaReply:
                return await client.vqa(served, image, asked)

            size = len(image) + len(asked.encode()) * 3 + _URL_BYTES  # %-encoded at worst
            return WholeRequest(name, policy, options.pinned_plan, 1, size, ask)

        def body(reply: VqaReply) -> dict[str, Any]:
            return {
                "model": model,
                "question": checked_question(question),
                "answer": reply.answer,
                "probability": reply.probability,
                "note": reply.note,
                "unknown_words": reply.unknown_words,
            }

        return await self.calls.serve(pending, prepare, body)
