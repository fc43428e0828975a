"""Errors the API answers with, the request id and body limit, and the catch-all that never leaks a trace.

Open311 paths answer in the standard's form, a list of ``{"code", "description"}`` (``<errors><error>``
when the path ends with ``.xml``); the units' and ops centre's paths with
``{"error": {"code", "message", "request_id"}}``.
Every response carries ``X-Request-ID``; a 500 names it so a log line can be found.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streams.api.open311_formats import Utf8JSONResponse, error_body, format_of_path, respond
from streams.logs import bound

log = logging.getLogger("streams.api")

OPEN311_PREFIX = "/open311/"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    """An answer other than success: HTTP status, a short code and a sentence for the caller."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def error_response(request: Request, status: int, code: str, message: str, headers: dict | None = None) -> Response:
    rid = request_id(request)
    headers = {**(headers or {}), "X-Request-ID": rid}
    path = request.url.path
    if path.startswith(OPEN311_PREFIX):
        return respond(format_of_path(path), "errors", error_body(status, message), status, headers)
    body = {"error": {"code": code, "message": message, "request_id": rid}}
    return Utf8JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 400, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 401: "unauthorized"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(request, exc.status_code, codes.get(exc.status_code, "error"), message,
                              dict(exc.headers or {}))  # fmt: skip

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("request %s %s failed (request id %s)", request.method, request.url.path, request_id(request),
                  exc_info=exc)  # fmt: skip
        return error_response(request, 500, "internal", f"internal error; quote request id {request_id(request)}")


class RequestGuard:
    """Pure ASGI middleware: a request id for every request, and 413 for bodies over ``max_body`` bytes.

    The declared Content-Length is checked before anything is read; a chunked
    body is counted as it arrives and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(send, rid, path)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:  # FastAPI passes HTTPException through body parsing
                    raise HTTPException(413, f"request body larger than {self.max_body} bytes")
            return message

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        with bound(request_id=rid):  # every line logged while this request is handled names it
            await self.app(scope, limited, tagged)

    async def _too_large(self, send: Send, rid: str, path: str) -> None:
        message = f"request body larger than {self.max_body} bytes"
        if path.startswith(OPEN311_PREFIX):
            answer = respond(format_of_path(path), "errors", error_body(413, message), 413)
            payload, media = bytes(answer.body), (answer.media_type or "").encode()
        else:
            body: Any = {"error": {"code": "too_large", "message": message, "request_id": rid}}
            payload, media = json.dumps(body).encode(), b"application/json; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", media), (b"content-length", str(len(payload)).encode()),
                                (b"x-request-id", rid.encode()), (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})
