"""The gateway's HTTP API (clients authenticate with their API key).

    GET  /healthz                          open
    GET  /v1/models                        chat ("auto" included), vision, embedding, VQA models
    POST /v1/chat/completions              OpenAI-compatible chat, streaming too; planned
    POST /v1/vision/classify?model=M       image bytes in, top-k labels out; planned
    POST /v1/embeddings                    OpenAI-compatible sentence embeddings; planned
    POST /v1/vision/vqa?model=M&question=Q image bytes in, the VQA model's answer; planned
    POST /v1/tasks                         {"task": "classify" | "chat", ...}: the generic entry
    POST /v1/runs                          a request in plain language (+ files): planned, run
    GET  /v1/runs/{id}                     one run: its graph, its steps and their records
    GET  /v1/requests/{id}                 one ledger record, with the alternatives considered
    GET  /v1/plans?model=M                 the current prediction for every plan of a vision model
    GET  /metrics                          Prometheus text format: an admin key or the
                                           nodes' token only (it shows every key's budget)

Policy per request: the ``X-Tierwise-Policy`` header, or ``{"tierwise": {"policy": {...}}}``
in a JSON body. Every answer names its plan and costs in ``X-Tierwise-*`` headers and a
``tierwise`` object in the body.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

import tierwise
from tierwise.errors import InputError, InvalidBodyError, NotFoundError
from tierwise.gateway.chat.answering import Streamed
from tierwise.gateway.edge_errors import install_recording_handlers
from tierwise.gateway.gateway import Gateway
from tierwise.gateway.keys import Caller, KeyRing
from tierwise.gateway.recorder import Served
from tierwise.gateway.request_options import RequestOptions, parse_options
from tierwise.gateway.runs.service import RunRequest
from tierwise.net.http_common import (
    ERROR_RESPONSES,
    BodyLimit,
    answers,
    binary_body,
    install_error_handlers,
)
from tierwise.net.json_input import check_json
from tierwise.orchestrate.graph import TaskGraph
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.whole_schema import EmbeddingsRequest


class ChatRequest(oa.ChatCompletionRequest):
    tierwise: dict[str, Any] | None = None


class EmbeddingsBody(EmbeddingsRequest):
    tierwise: dict[str, Any] | None = None


M = TypeVar("M", bound=BaseModel)
_CHAT_ANSWERS = answers("application/json", "text/event-stream")
_FILE_NAME = re.compile(r"[\w][\w.-]{0,127}")


class _CheckedBody(BaseModel):
    """A body of the gateway's own: unknown fields refused, text checked at the door."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _checked_text(cls, data: Any) -> Any:
        check_json(data)
        return data


class RunBody(_CheckedBody):
    """A plain-language run: the request, its files by the names the text uses (base64),
    and optionally the graph to run instead of planning one."""

    input: str = Field(min_length=1, max_length=20_000)
    files: dict[str, str] = Field(default_factory=dict, max_length=16)
    graph: dict[str, Any] | None = None
    max_usd: float | None = Field(None, ge=0)
    tierwise: dict[str, Any] | None = None


class ClassifyTask(_CheckedBody):
    task: Literal["classify"]
    model: str = "efficientnet-lite0"
    image_base64: str = Field(min_length=1)
    top_k: int = Field(5, ge=1, le=1000)
    tierwise: dict[str, Any] | None = None


#: /v1/tasks reads its body itself (the task decides the model): its schema, for OpenAPI
_TASK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        ClassifyTask.model_json_schema(),
                        {
                            "allOf": [
                                {"$ref": "#/components/schemas/ChatRequest"},
                                {
                                    "type": "object",
                                    "required": ["task"],
                                    "properties": {"task": {"const": "chat"}},
                                },
                            ]
                        },
                    ]
                }
            }
        },
    }
}


def create_gateway_app(gateway: Gateway, keys: KeyRing, max_body: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="tierwise gateway",
        version=tierwise.__version__,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.gateway, app.state.keys = gateway, keys
    install_error_handlers(app)
    install_recording_handlers(app, gateway, keys)
    app.add_middleware(BodyLimit, limit=max_body)
    app.include_router(_info_routes(gateway))
    app.include_router(_work_routes(gateway))
    app.include_router(_whole_routes(gateway))
    return app


def _caller(request: Request) -> Caller:
    keys: KeyRing = request.app.state.keys
    return keys.authenticate(request.headers.get("authorization"))


Authed = Annotated[Caller, Depends(_caller)]


def _info_routes(gateway: Gateway) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "role": "gateway",
            "offline": gateway.live.offline(),
            "profiling": gateway.profiling(),
        }

    @router.get("/v1/models")
    async def models(_: Authed) -> dict[str, Any]:
        whole = [*gateway.embeddings.models(), *gateway.vqa.models()]
        return oa.models_json(
            ["auto", *gateway.chat.models(), *gateway.vision.models, *whole], owner="tierwise"
        )

    @router.get("/metrics", responses=answers("text/plain"))
    async def metrics(request: Request) -> Response:
        keys: KeyRing = request.app.state.keys
        keys.authorize_metrics(request.headers.get("authorization"))
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    @router.get("/v1/requests/{request_id}")
    async def record(request_id: str, who: Authed) -> dict[str, Any]:
        rec = await run_in_threadpool(gateway.ledger.get, request_id)
        if rec is None or rec.api_key != who.name:
            raise NotFoundError(f"no request {request_id!r} for this API key")
        return asdict(rec)

    @router.get("/v1/plans")
    async def plans(_: Authed, model: str = Query("efficientnet-lite0")) -> dict[str, Any]:
        return gateway.vision.current_plans(model)

    return router


def _work_routes(gateway: Gateway) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/chat/completions", response_model=None, responses=_CHAT_ANSWERS)
    async def chat(body: ChatRequest, request: Request, who: Authed) -> Response:
        options = parse_options(_lower(request.headers), body.tierwise)
        return await _chat(gateway, who, body, options)

    @router.post("/v1/vision/classify", openapi_extra=binary_body())
    async def classify(
        request: Request,
        who: Authed,
        model: str = Query("efficientnet-lite0"),
        top_k: int = Query(5, ge=1, le=1000),
    ) -> JSONResponse:
        options = parse_options(_lower(request.headers))
        served = await gateway.vision.classify(who, await request.body(), model, top_k, options)
        return _json(served)

    @router.post(
        "/v1/tasks",
        response_model=None,
        openapi_extra=_TASK_BODY,
        responses=_CHAT_ANSWERS,
    )
    async def tasks(request: Request, who: Authed) -> Response:
        return await _task(gateway, who, request, await _json_body(request))

    @router.post("/v1/runs")
    async def runs(body: RunBody, request: Request, who: Authed) -> dict[str, Any]:
        options = parse_options(_lower(request.headers), body.tierwise)
        result = await gateway.runs.run(who, _run_request(body), options)
        return result.to_json()

    @router.get("/v1/runs/{run_id}")
    async def run_record(run_id: str, who: Authed) -> dict[str, Any]:
        found = await run_in_threadpool(gateway.ledger.get_run, run_id)
        if found is None or found[0].api_key != who.name:
            raise NotFoundError(f"no run {run_id!r} for this API key")
        run, steps = found
        return {**asdict(run), "records": [asdict(s) for s in steps]}

    return router


def _whole_routes(gateway: Gateway) -> APIRouter:
    """Models called whole: each request runs on one node, placed by the planner."""
    router = APIRouter()

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsBody, request: Request, who: Authed) -> JSONResponse:
        options = parse_options(_lower(request.headers), body.tierwise)
        return _json(await gateway.embeddings.embed(who, body, options))

    @router.post("/v1/vision/vqa", openapi_extra=binary_body())
    async def vqa(
        request: Request,
        who: Authed,
        model: str = Query(...),
        question: str | None = Query(None),
    ) -> JSONResponse:
        options = parse_options(_lower(request.headers))
        image = await request.body()
        return _json(await gateway.vqa.answer(who, image, question, model, options))

    return router


def _run_request(body: RunBody) -> RunRequest:
    files = {}
    for name, data in body.files.items():
        if not _FILE_NAME.fullmatch(name):
            raise InputError(
                f"files: {name!r} is not a plain file name (letters, digits, '.', '-', '_')",
                param="files",
            )
        files[name] = _b64(data, f"files.{name}")
    graph = TaskGraph.from_taskbench(body.graph) if body.graph is not None else None
    return RunRequest(body.input, files, graph, body.max_usd)


async def _task(gateway: Gateway, who: Caller, request: Request, data: dict[str, Any]) -> Response:
    task = data.get("task")
    if task == "classify":
        job = _validated(ClassifyTask, data)
        options = parse_options(_lower(request.headers), job.tierwise)
        image = _b64(job.image_base64, "image_base64")
        return _json(await gateway.vision.classify(who, image, job.model, job.top_k, options))
    if task == "chat":
        body = _validated(ChatRequest, {k: v for k, v in data.items() if k != "task"})
        return await _chat(
            gateway, who, body, parse_options(_lower(request.headers), body.tierwise)
        )
    raise InputError("task: expected one of ['chat', 'classify']", param="task")


def _validated(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as ``model``, or a 422 naming each bad field, as FastAPI's own bodies.

    Only pydantic's messages go into it, never the input it echoes (the client's text)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        ]
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        param = ".".join(str(p) for p in first) or None
        raise InvalidBodyError("; ".join(problems), param=param) from None


async def _chat(
    gateway: Gateway, who: Caller, body: ChatRequest, options: RequestOptions
) -> Response:
    if body.stream:
        return _ClosingStream(await gateway.chat.stream(who, body, options))
    return _json(await gateway.chat.complete(who, body, options))


class _ClosingStream(StreamingResponse):
    """An SSE answer that, however it ends (finished, or its client gone), closes its
    stream: Starlette only cancels the sending, and a stream its client left must still
    be recorded and its hold released (:meth:`Streamed.close`)."""

    def __init__(self, streamed: Streamed) -> None:
        super().__init__(streamed.events, media_type="text/event-stream", headers=streamed.headers)
        self._streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._streamed.close()


def _json(served: Served) -> JSONResponse:
    return JSONResponse(served.body, headers=served.headers)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise InputError(
            f"the body is not valid JSON: {exc.msg} at character {exc.pos}", param="body"
        ) from None
    except (ValueError, RecursionError):
        # Not the decoder's whole message: a UnicodeDecodeError's quotes the body's bytes.
        raise InputError("the body is not valid JSON text in UTF-8", param="body") from None
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object with a `task` field", param="body")
    check_json(data)
    return data


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{field} is not valid base64: {exc}", param=field) from exc
