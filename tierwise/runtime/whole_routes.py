"""A node's endpoints for models called whole: sentence embeddings and VQA.

    POST /v1/embeddings                  OpenAI-compatible: {"model", "input"} → vectors
    POST /v1/vision/vqa?model=M&question=Q
                                         image bytes in, one of the model's answers out

Each answer's ``tierwise`` object carries the node's compute time, as the other
endpoints' do, so the gateway can tell compute from transfer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tierwise.models.registry import NodeModels
from tierwise.models.whole import VqaQuestion
from tierwise.net.http_common import binary_body
from tierwise.runtime.images import decode_image_async
from tierwise.runtime.metrics import NodeMetrics
from tierwise.runtime.whole_schema import EmbeddingsRequest, checked_question, embeddings_json

Extension = Callable[[float], dict[str, Any]]


def whole_routes(models: NodeModels, metrics: NodeMetrics, ext: Extension) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        model = models.embedder(body.model)
        texts, fmt = body.texts(), body.encoding()
        started = time.perf_counter()
        embedded = await run_in_threadpool(model.run, texts)
        compute_ms = (time.perf_counter() - started) * 1e3
        metrics.compute.labels(model=body.model).inc(compute_ms / 1e3)
        metrics.tokens.labels(model=body.model, kind="prompt").inc(embedded.tokens)
        return embeddings_json(body.model, embedded.vectors, embedded.tokens, fmt, ext(compute_ms))

    @router.post("/v1/vision/vqa", openapi_extra=binary_body())
    async def vqa(
        request: Request, model: str = Query(...), question: str | None = Query(None)
    ) -> dict[str, Any]:
        answerer = models.vqa_model(model)
        asked = checked_question(question)
        image = await decode_image_async(await request.body(), param="image")
        started = time.perf_counter()
        answer = await run_in_threadpool(answerer.run, VqaQuestion(image, asked))
        compute_ms = (time.perf_counter() - started) * 1e3
        metrics.compute.labels(model=model).inc(compute_ms / 1e3)
        return {
            "model": model,
            "question": asked,
            "answer": answer.answer,
            "probability": round(answer.probability, 6),
            "note": answer.note,
            "unknown_words": list(answer.unknown_words),
            "tierwise": ext(compute_ms),
        }

    return router
