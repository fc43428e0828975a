"""CORS for Open311 only: its GET routes are public data that other sites' pages may read (a city's map of
requests, a neighbourhood app); the answer to a POST only to the origins named for it. The units' and the ops
centre's routes answer no other origin: their pages are served by the API itself.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from streams.api.errors import OPEN311_PREFIX

_EXPOSED = ["X-Request-ID"]


class Open311Cors:
    """Pure ASGI middleware: Starlette's CORSMiddleware for /open311/ paths, with one origin list for reads and
    another for posts (no credentials either way: Open311 has none but its api_key)."""

    def __init__(self, app: ASGIApp, read_origins: list[str], post_origins: list[str]) -> None:
        self.app = app
        self.read: ASGIApp = app
        self.post: ASGIApp = app
        if read_origins:
            self.read = CORSMiddleware(app, allow_origins=read_origins, allow_methods=["GET", "HEAD"],
                                       expose_headers=_EXPOSED, max_age=3600)  # fmt: skip
        if post_origins:
            self.post = CORSMiddleware(app, allow_origins=post_origins, allow_methods=["POST"], max_age=3600,
                                       allow_headers=["Content-Type"], expose_headers=_EXPOSED)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(OPEN311_PREFIX):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method == "OPTIONS":  # a preflight names the method it asks for
            asked = dict(scope.get("headers", [])).get(b"access-control-request-method", b"GET")
            method = asked.decode("latin-1").upper()
        await (self.read if method in ("GET", "HEAD") else self.post)(scope, receive, send)
