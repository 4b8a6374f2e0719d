"""What every tierwise HTTP server shares: error bodies, bearer auth and a body limit.

Errors use the OpenAI error shape, so OpenAI clients surface our messages unchanged:
``{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}``.
Exceptions map to statuses in :func:`install_error_handlers` and nowhere else.
"""

from __future__ import annotations

import hmac
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.errors import PayloadTooLargeError, TierwiseError

log = logging.getLogger("tierwise.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None


class ErrorBody(BaseModel):
    """Every error's body, in OpenAI's shape."""

    error: ErrorDetail


#: the error statuses every tierwise server may answer, for its OpenAPI schema (pass as
#: ``FastAPI(responses=...)``), so that a client or a fuzzer knows every answer's shape
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why}
    for status, why in (
        (400, "bad input or policy; `param` names the field"),
        (401, "missing or unknown key or token"),
        (403, "a key without the right to this endpoint"),
        (404, "unknown model, plan, record or path"),
        (413, "a body, or a decoded image, over a limit"),
        (422, "a field breaks the schema, or no plan meets the policy"),
        (429, "the budget cannot cover any plan that could serve"),
        (502, "another node or a remote API failed"),
        (503, "every plan tried failed, or a part is not ready"),
    )
}


def binary_body(*media_types: str) -> dict[str, Any]:
    """An operation's raw request body, for ``openapi_extra`` (FastAPI cannot infer it
    from a handler that reads ``request.body()``)."""
    schema = {"type": "string", "format": "binary"}
    content = {t: {"schema": schema} for t in media_types or ("application/octet-stream",)}
    return {"requestBody": {"required": True, "content": content}}


def answers(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """An operation's 200 answer in media types other than JSON, for ``responses``."""
    return {200: {"description": "the answer", "content": {t: {} for t in media_types}}}


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "code": code,
            "param": param,
        }
    }


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        error_body(status, message, code, param), status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """The status of every exception, and a last guard that hides unhandled ones."""
    app.add_middleware(HideUnhandled)

    @app.exception_handler(TierwiseError)
    async def _ours(_: Request, exc: TierwiseError) -> JSONResponse:
        return tierwise_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_exception_response(exc)


def tierwise_error_response(exc: TierwiseError) -> JSONResponse:
    if exc.http_status >= 500:
        # Our own words (which never quote a prompt), for the operator.
        log.error("%s: %s", type(exc).__name__, exc.message)
    return error_response(exc.http_status, exc.message, exc.code, exc.param)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """422 naming each field that breaks the schema; 400 for a body that is not JSON.

    Only pydantic's message is used, never the ``input`` it carries: that is the client's
    own text, which may be personal."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            why, at = (err.get("ctx") or {}).get("error", "unreadable"), err["loc"][-1]
            message = f"the body is not valid JSON: {why} at character {at}"
            return error_response(400, message, "invalid_body", "body")
        if tuple(err["loc"]) == ("body",) and isinstance(err.get("input"), bytes | str):
            # sent as another content type, so FastAPI never read it as JSON
            message = "the body must be a JSON object, sent as Content-Type: application/json"
            return error_response(400, message, "invalid_body", "body")
    problems = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        problems.append(f"{where or 'body'}: {err['msg']}")
    first = errors[0]["loc"] if errors else ()
    param = ".".join(str(p) for p in first if p != "body") or None
    return error_response(422, "; ".join(problems), "invalid_body", param)


def http_exception_response(exc: StarletteHTTPException) -> JSONResponse:
    code = "not_found" if exc.status_code == 404 else "http_error"
    detail = str(exc.detail)
    if exc.status_code == 400 and detail.startswith("There was an error parsing the body"):
        # FastAPI's words for both bad JSON and bytes that are not UTF-8.
        detail, code = "the body must be JSON text encoded as UTF-8", "invalid_body"
    response = error_response(exc.status_code, detail, code)
    response.headers.update(exc.headers or {})  # a 405's Allow, for one
    return response


class HideUnhandled:
    """ASGI middleware: an exception no handler maps is a bug, answered 500 and logged
    by type and place only. Its message is withheld from the log, because it may quote
    the request (pydantic's and json's messages do), and prompts must stay out of logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as exc:
            where = " < ".join(
                f"{Path(f.filename).name}:{f.lineno}"
                for f in reversed(traceback.extract_tb(exc.__traceback__)[-4:])
            )
            log.error(
                "unhandled %s in %s %s at %s (message withheld: it may quote the request)",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                where,
            )
            if not started:
                message = "internal error; the server's log says where"
                await _send_json(send, 500, error_body(500, message, "internal_error"))


class BearerAuth:
    """ASGI middleware: every path except the open ones needs ``Authorization: Bearer``."""

    def __init__(self, app: ASGIApp, token: str | None, open_paths: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization")
        if not given.startswith(b"Bearer ") or not hmac.compare_digest(
            given[7:].strip(), self.token
        ):
            what = "missing" if not given else "wrong"
            message = (
                f"{what} bearer token: send `Authorization: Bearer <token>` with the cluster token"
            )
            await _send_json(send, 401, error_body(401, message, "invalid_token"))
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: answer 413 to bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.limit:
            message = (
                f"request body is {int(declared)} bytes; this node accepts at most {self.limit}"
            )
            await _send_json(send, 413, error_body(413, message, "payload_too_large"))
            return
        seen = 0
        over = False  # once the body outgrows the limit, the answer is a 413 whatever
        replaced = False  # the app makes of the error (FastAPI calls it a parse error)

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise PayloadTooLargeError(self._too_large, param="body")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if not over:
                await send(message)
            elif not replaced and message["type"] == "http.response.start":
                replaced = True
                body = error_body(413, self._too_large, "payload_too_large", "body")
                await _send_json(send, 413, body)

        await self.app(scope, counting_receive, guarded_send)

    @property
    def _too_large(self) -> str:
        return f"request body exceeds this node's limit of {self.limit} bytes"


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return b""


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
