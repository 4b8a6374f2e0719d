"""Requests that end at the HTTP edge still end in the ledger.

Most requests end in a service, which records them (:class:`~.recorder.Recorder`). A few
end before a service sees them: a body FastAPI refuses against its schema, a policy
header that does not parse, a ``/v1/tasks`` body of no known task. The docs promise that
every request past authentication leaves a record, so these handlers write it, for
every ``POST`` whose caller's key is valid, unless a service already did
(``TierwiseError.recorded``). Each handler then answers as the shared ones do.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.errors import AuthError, InputError, InvalidBodyError, TierwiseError
from tierwise.gateway.gateway import Gateway
from tierwise.gateway.keys import KeyRing
from tierwise.gateway.recorder import Pending
from tierwise.gateway.request_options import RequestOptions
from tierwise.net.http_common import (
    http_exception_response,
    tierwise_error_response,
    validation_error_response,
)
from tierwise.policy import Policy

#: the ledger's task name for each work endpoint
TASKS = {
    "/v1/chat/completions": "chat",
    "/v1/vision/classify": "classify",
    "/v1/embeddings": "embed",
    "/v1/vision/vqa": "vqa",
    "/v1/tasks": "task",
    "/v1/runs": "run",
}


def install_recording_handlers(app: FastAPI, gateway: Gateway, keys: KeyRing) -> None:
    """Replace the shared handlers with ones that record the failure first."""

    @app.exception_handler(TierwiseError)
    async def _ours(request: Request, exc: TierwiseError) -> JSONResponse:
        await _record(request, gateway, keys, exc)
        return tierwise_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        response = validation_error_response(exc)
        error = _as_error(response, InvalidBodyError)
        await _record(request, gateway, keys, error)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = http_exception_response(exc)
        if exc.status_code < 500 and exc.status_code not in (401, 404, 405):
            await _record(request, gateway, keys, _as_error(response, InputError))
        return response


def _as_error(response: JSONResponse, kind: type[InputError]) -> TierwiseError:
    """The response's error as a TierwiseError of its status, for the record."""
    error = json.loads(bytes(response.body))["error"]
    made = kind(error["message"], param=error["param"])
    made.http_status = response.status_code
    made.code = error["code"]
    return made


async def _record(request: Request, gateway: Gateway, keys: KeyRing, exc: TierwiseError) -> None:
    task = TASKS.get(request.url.path)
    if exc.recorded or request.method != "POST" or task is None or isinstance(exc, AuthError):
        return
    with contextlib.suppress(AuthError):
        caller = keys.authenticate(request.headers.get("authorization"))
        policy = gateway.pipeline.policy_for(caller, RequestOptions(Policy(), None))
        model = request.query_params.get("model", "-")
        await gateway.pipeline.shared.recorder.failed(Pending.new(caller, task, model, policy), exc)
