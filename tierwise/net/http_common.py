"""What every tierwise HTTP server shares: error bodies, bearer auth and a body limit.

Errors use the OpenAI error shape, so OpenAI clients surface our messages unchanged:
``{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}``.
Exceptions map to statuses in :func:`install_error_handlers` and nowhere else.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


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
    @app.exception_handler(TierwiseError)
    async def _ours(_: Request, exc: TierwiseError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc.http_status, exc.message, exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "body")
            problems.append(f"{where or 'body'}: {err['msg']}")
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        param = ".".join(str(p) for p in first if p != "body") or None
        return error_response(422, "; ".join(problems), "invalid_body", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        detail = str(exc.detail)
        if exc.status_code == 400 and detail.startswith("There was an error parsing the body"):
            # FastAPI's words for both bad JSON and bytes that are not UTF-8.
            detail, code = "the body must be JSON text encoded as UTF-8", "invalid_body"
        return error_response(exc.status_code, detail, code)


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

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLargeError(
                        f"request body exceeds this node's limit of {self.limit} bytes"
                    )
            return message

        await self.app(scope, counting_receive, send)


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
