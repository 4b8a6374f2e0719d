"""The node server: one FastAPI app per node, hosting that node's models.

Endpoints (all but /healthz need the cluster's bearer token):

    GET  /healthz                        liveness, open
    GET  /v1/info                        node profile, models, stages, limits
    GET  /v1/models                      OpenAI-compatible model list
    POST /v1/chat/completions            OpenAI-compatible chat, streaming (SSE) included
    POST /v1/vision/classify?model=M     image bytes in, top-k ImageNet labels out
    POST /v1/embeddings                  OpenAI-compatible sentence embeddings
    POST /v1/vision/vqa?model=M&question=Q
                                         image bytes in, the VQA model's answer out
    POST /v1/stages/{model}/run?start=S&end=E[&then=NODE&then_end=F]
                                         tensor in (or, at stage 0, an image file), tensor
                                         out (tierwise wire format); with ``then``, the
                                         output goes on to NODE's stages [E, F) and its
                                         answer comes back (three-tier plans)
    POST /v1/probe                       body in, its size out (link measurement)
    GET  /metrics                        Prometheus text format
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

import tierwise
from tierwise.codecs import wire
from tierwise.codecs.registry import decode_message, get_codec
from tierwise.config import ClusterSpec, NodeSpec
from tierwise.errors import InputError, NotFoundError, TierwiseError
from tierwise.ledger.energy import RaplMeter
from tierwise.models.base import ChatChunk, ChatModel, StagedModel, Usage
from tierwise.models.registry import NodeModels
from tierwise.net.http_common import (
    ERROR_RESPONSES,
    ASGIApp,
    BearerAuth,
    BodyLimit,
    Receive,
    Scope,
    Send,
    answers,
    binary_body,
    error_body,
    install_error_handlers,
)
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.images import decode_image, decode_image_async
from tierwise.runtime.metrics import NodeMetrics
from tierwise.runtime.stage_relay import Relay, check_forward
from tierwise.runtime.threaded_stream import ThreadedStream
from tierwise.runtime.whole_routes import whole_routes

OPEN_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class NodeSettings:
    spec: ClusterSpec
    node: NodeSpec
    token: str | None
    rapl: RaplMeter | None = None  # measures CPU package energy where the machine allows
    relay: Relay | None = None  # how it reaches other nodes, to forward a stage call


def create_node_app(settings: NodeSettings, models: NodeModels) -> FastAPI:
    node = settings.node
    app = FastAPI(
        title=f"tierwise node {node.name}", version=tierwise.__version__, responses=ERROR_RESPONSES
    )
    metrics = NodeMetrics(node.name, node.tier, node.speed_factor)
    app.state.settings, app.state.models, app.state.metrics = settings, models, metrics
    install_error_handlers(app)
    app.add_middleware(_Wrap, wrap=metrics.asgi)
    app.add_middleware(BodyLimit, limit=node.max_request_bytes)
    app.add_middleware(BearerAuth, token=settings.token, open_paths=OPEN_PATHS)
    ext = _ExtensionFields(node)
    app.include_router(_node_routes(settings, models, metrics))
    app.include_router(_chat_routes(models, metrics, ext))
    app.include_router(_vision_routes(models, metrics, ext, settings))
    app.include_router(whole_routes(models, metrics, ext))
    return app


def _node_routes(settings: NodeSettings, models: NodeModels, metrics: NodeMetrics) -> APIRouter:
    router = APIRouter()
    node = settings.node

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "node": node.name, "tier": node.tier}

    @router.get("/v1/info")
    async def info() -> dict[str, Any]:
        return node_info(settings, models)

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return oa.models_json(models.names, owner=f"tierwise:{node.name}")

    @router.get("/metrics", responses=answers("text/plain"))
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @router.post("/v1/probe", openapi_extra=binary_body())
    async def probe(request: Request) -> dict[str, int]:
        """Swallows a body and answers its size: gateways time this to measure a link."""
        return {"received": len(await request.body())}

    return router


def _chat_routes(models: NodeModels, metrics: NodeMetrics, ext: _ExtensionFields) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/chat/completions",
        response_model=None,
        responses=answers("application/json", "text/event-stream"),
    )
    async def chat(body: oa.ChatCompletionRequest) -> JSONResponse | StreamingResponse:
        model = models.chat_model(body.model)
        messages = body.to_messages()
        params = body.to_params(model.max_tokens_default)
        started = time.perf_counter()
        stream = ThreadedStream(model.stream(messages, params))
        try:
            first = await stream.next()  # errors before the first token get a real status
        except BaseException:
            await stream.aclose()
            raise
        if body.stream:
            return StreamingResponse(
                _sse(body, first, stream, started, ext, metrics),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Tierwise-Node": ext.node.name},
            )
        chunks = [first] if first is not None else []
        chunks += [c async for c in stream]
        text, last = _collect(chunks, model)
        assert last.usage is not None and last.finish_reason is not None
        compute_ms = (time.perf_counter() - started) * 1e3
        _count_tokens(metrics, model.name, last.usage, compute_ms)
        fields = {**ext(compute_ms), **_confidence(last)}
        return JSONResponse(
            oa.completion_json(
                oa.new_completion_id(), model.name, text, last.finish_reason, last.usage, fields
            )
        )

    return router


def _vision_routes(
    models: NodeModels, metrics: NodeMetrics, ext: _ExtensionFields, settings: NodeSettings
) -> APIRouter:
    router = APIRouter()
    rapl = settings.rapl

    @router.post("/v1/vision/classify", openapi_extra=binary_body())
    async def classify(
        request: Request, model: str = Query(...), top_k: int = Query(5, ge=1, le=1000)
    ) -> dict[str, Any]:
        staged = models.staged_model(model)
        image = await decode_image_async(await request.body())
        started = time.perf_counter()

        def run() -> list[dict[str, Any]]:
            logits = staged.run_all(staged.preprocess(image))
            return [p.__dict__ for p in staged.top_k(logits, top_k)]

        predictions = await run_in_threadpool(run)
        compute_ms = (time.perf_counter() - started) * 1e3
        metrics.compute.labels(model=model).inc(compute_ms / 1e3)
        return {"model": model, "predictions": predictions, "tierwise": ext(compute_ms)}

    @router.post(
        "/v1/stages/{model}/run",
        openapi_extra=binary_body(wire.CONTENT_TYPE, "image/png"),
        responses=answers(wire.CONTENT_TYPE),
    )
    async def run_stages(
        request: Request,
        model: str,
        start: int = Query(..., ge=0),
        end: int = Query(..., ge=1),
        out_codec: str = Query("raw", description="codec for the output tensor"),
        then: str | None = Query(None, description="a node to forward the output to"),
        then_end: int | None = Query(None, ge=1, description="where that node's stages end"),
    ) -> Response:
        staged = models.staged_model(model)
        _check_stage_range(staged, start, end)
        check_forward(then, then_end, end, len(staged.stages))
        codec = get_codec(out_codec)
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        x, headers = await run_in_threadpool(_stage_input, staged, start, raw, content_type)
        started = time.perf_counter()
        energy_start = rapl.read_uj() if rapl is not None else None
        out = await run_in_threadpool(staged.run_stages, x, start, end)
        compute_ms = (time.perf_counter() - started) * 1e3
        metrics.compute.labels(model=model).inc(compute_ms / 1e3)
        meta = {"model": model, "start": start, "end": end}
        payload = await run_in_threadpool(codec.to_wire, out, meta)
        metrics.payload_bytes.labels(direction="in").inc(len(raw))
        metrics.payload_bytes.labels(direction="out").inc(len(payload))
        headers |= {"X-Tierwise-Compute-Ms": f"{compute_ms:.3f}", "X-Tierwise-Node": ext.node.name}
        if rapl is not None and energy_start is not None:
            headers["X-Tierwise-Rapl-Joules"] = f"{rapl.joules_since(energy_start):.6f}"
        if then is not None and then_end is not None:
            payload, forwarded = await _relay(settings).forward(model, payload, end, then_end, then)
            headers |= forwarded
        return Response(payload, media_type=wire.CONTENT_TYPE, headers=headers)

    return router


# ---------------------------------------------------------------- helpers


class _Wrap:
    """Adapts a function ``asgi_app -> asgi_app`` to Starlette's middleware protocol."""

    def __init__(self, app: ASGIApp, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self._wrapped = wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._wrapped(scope, receive, send)


class _ExtensionFields:
    """The ``tierwise`` object added to responses: where it ran and what it took."""

    def __init__(self, node: NodeSpec) -> None:
        self.node = node

    def __call__(self, compute_ms: float) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "node": self.node.name,
            "tier": self.node.tier,
            "compute_ms": round(compute_ms, 3),
        }
        if self.node.speed_factor < 1:
            fields["emulated_speed_factor"] = self.node.speed_factor
        return fields


#: what /v1/info calls the task of a model called whole, by its role
_WHOLE_TASKS = {"embedding": "embeddings", "vqa": "visual-question-answering"}


def node_info(settings: NodeSettings, models: NodeModels) -> dict[str, Any]:
    node = settings.node
    entries = []
    for name in models.names:
        entry: dict[str, Any] = {"name": name, "kind": models.kinds[name]}
        if name in models.chat:
            entry["task"] = "chat"
        elif name in models.whole:
            entry["task"] = _WHOLE_TASKS[models.roles[name]]
            entry.update(models.whole[name].describe())
        else:
            staged = models.staged[name]
            entry["task"] = "image-classification"
            entry["stages"] = [s.__dict__ for s in staged.stages]
            entry["split_points"] = staged.split_points
            card = models.variants.get(name)
            if card is not None:
                entry["variant_of"] = card.base
                entry["measured"] = card.measured
        entries.append(entry)
    emulated = None
    if node.speed_factor < 1:
        emulated = {"speed_factor": node.speed_factor, "reason": node.emulate.reason or "EMULATED"}
    return {
        "node": node.name,
        "tier": node.tier,
        "version": tierwise.__version__,
        "emulated": emulated,
        "profile": {
            "power": node.power.model_dump(),
            "usd_per_compute_second": settings.spec.prices.compute_price(node),
            "threads": node.threads,
        },
        "limits": {"max_request_bytes": node.max_request_bytes},
        "wire_format": {"content_type": wire.CONTENT_TYPE, "version": wire.VERSION},
        "models": entries,
    }


def _check_stage_range(staged: StagedModel, start: int, end: int) -> None:
    n = len(staged.stages)
    if not 0 <= start < end <= n:
        raise NotFoundError(
            f"no stages [{start}, {end}) in {staged.name}: it has stages 0..{n - 1}; "
            f"ask for 0 <= start < end <= {n}",
            param="start",
        )


def _stage_input(
    staged: StagedModel, start: int, raw: bytes, content_type: str
) -> tuple[np.ndarray, dict[str, str]]:
    """A stage's input from the body: a tensor message, or at stage 0 an image file as the
    caller uploaded it, sent as ``image/*`` (then decoded and prepared here, and its
    digest sent back, so the caller can check the bytes arrived unchanged)."""
    if not content_type.startswith("image/"):
        x = decode_message(wire.decode_tensor(raw))
        _check_stage_input(staged, start, x)
        return x, {}
    if start != 0:
        raise InputError(
            f"stage {start} takes a tensor ({wire.CONTENT_TYPE}); only stage 0 takes an image",
            param="body",
        )
    x = staged.preprocess(decode_image(raw))
    return x, {"X-Tierwise-Input-Sha256": hashlib.sha256(raw).hexdigest()}


def _relay(settings: NodeSettings) -> Relay:
    if settings.relay is None:
        raise InputError("this node cannot forward: it was started without peers", param="then")
    return settings.relay


def _check_stage_input(staged: StagedModel, start: int, array: np.ndarray) -> None:
    expected = staged.stages[start].input_shape
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
        dims = ", ".join(map(str, expected))
        raise InputError(
            f"stage {start} of {staged.name} takes a batch of shape [N, {dims}]; "
            f"got {list(array.shape)}",
            param="body",
        )
    if array.dtype != np.float32:
        raise InputError(f"stage input must be float32, got {array.dtype}", param="body")
    if not 1 <= array.shape[0] <= 64:
        raise InputError(f"batch size must be 1..64, got {array.shape[0]}", param="body")


def _collect(chunks: list[ChatChunk], model: ChatModel) -> tuple[str, ChatChunk]:
    last = chunks[-1] if chunks else None
    if last is None or last.usage is None or last.finish_reason is None:
        raise TierwiseError(f"model {model.name} ended without a final chunk")
    return "".join(c.text for c in chunks), last


def _confidence(last: ChatChunk) -> dict[str, float]:
    """The answer's mean token log-probability, when the model reports one."""
    return {} if last.mean_logprob is None else {"mean_logprob": round(last.mean_logprob, 6)}


def _count_tokens(metrics: NodeMetrics, model: str, usage: Usage, compute_ms: float) -> None:
    metrics.tokens.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
    metrics.tokens.labels(model=model, kind="completion").inc(usage.completion_tokens)
    metrics.compute.labels(model=model).inc(compute_ms / 1e3)


async def _sse(
    body: oa.ChatCompletionRequest,
    first: ChatChunk | None,
    stream: ThreadedStream[ChatChunk],
    started: float,
    ext: _ExtensionFields,
    metrics: NodeMetrics,
) -> AsyncIterator[bytes]:
    cid, created = oa.new_completion_id(), int(time.time())

    yield oa.sse(
        oa.chunk_json(cid, body.model, {"role": "assistant", "content": ""}, None, created)
    )
    chunk = first
    try:
        while chunk is not None:
            if chunk.text:
                yield oa.sse(oa.chunk_json(cid, body.model, {"content": chunk.text}, None, created))
            if chunk.finish_reason is not None and chunk.usage is not None:
                compute_ms = (time.perf_counter() - started) * 1e3
                _count_tokens(metrics, body.model, chunk.usage, compute_ms)
                yield oa.sse(oa.chunk_json(cid, body.model, {}, chunk.finish_reason, created))
                if body.wants_usage_in_stream:
                    fields = {**ext(compute_ms), **_confidence(chunk)}
                    yield oa.sse(oa.usage_chunk_json(cid, body.model, chunk.usage, created, fields))
            chunk = await stream.next()
    except TierwiseError as exc:
        yield oa.sse(error_body(exc.http_status, exc.message, exc.code, exc.param))
    finally:
        await stream.aclose()
    yield oa.SSE_DONE
