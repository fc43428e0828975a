"""CityLoop's HTTP API: Open311 GeoReport v2, the field units' API and the ops centre's (FastAPI).

Started by ``cityloop api``. It reads Redis (orders, incidents, triage, tokens)
and writes to Kafka (reports, feedback events); the worker does the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match

from dispatch import CityPack
from streams import health, metrics, producemeter, web
from streams.api import board, connectors, discovery, open311, open311_updates, ops, sensors, units
from streams.api.context import ApiContext, EventWriter, KafkaWriter
from streams.api.cors import Open311Cors
from streams.api.errors import RequestGuard, install_error_handlers
from streams.api.open311_formats import Utf8JSONResponse
from streams.settings import Settings

log = logging.getLogger("streams.api")

DEV_OPEN311_KEY = "dev-open311-key"


def development_key_refusal(settings: Settings) -> str | None:
    """Why `cityloop api` must not start: it would accept the development api_key, which is published in the README
    (production accepted it with only a log warning), outside development mode; None when it may start."""
    if DEV_OPEN311_KEY not in settings.open311_keys or settings.dev:
        return None
    return (
        f"CITYLOOP_OPEN311_API_KEYS holds the development api_key {DEV_OPEN311_KEY!r}, which anyone can use: set "
        "CITYLOOP_OPEN311_API_KEYS to your own keys (or, for development only, CITYLOOP_DEV=1 or `cityloop api --dev`)"
    )


def create_api(
    settings: Settings,
    pack: CityPack,
    *,
    redis_client: Any = None,
    writer: EventWriter | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The API app; Redis and the Kafka writer are made at start-up unless given (tests give them)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import redis.asyncio as aioredis

        own_redis = redis_client is None
        client = redis_client or aioredis.Redis.from_url(settings.redis_url, socket_timeout=30,
                                                         socket_connect_timeout=5)  # fmt: skip
        own_writer = writer is None
        out = writer or KafkaWriter(settings.kafka, settings.produce_timeout_s)
        producemeter.API.start(metrics.API_OUTPUT_STREAMS)
        if own_writer:
            await out.start()  # type: ignore[union-attr]
        if DEV_OPEN311_KEY in settings.open311_keys:  # `cityloop api` refuses this outside development mode
            log.warning("Open311 accepts the development api_key %r (development mode)", DEV_OPEN311_KEY)
        kwargs = {"clock": clock} if clock else {}
        app.state.ctx = ApiContext.build(settings, pack, client, out, **kwargs)
        try:
            yield
        finally:
            if own_writer:
                await out.stop()  # type: ignore[union-attr]
            if own_redis:
                await client.aclose()

    app = FastAPI(
        title="CityLoop API",
        version="1",
        summary="Open311 GeoReport v2 for reporters, tasks for field units, the ops centre's desk.",
        description=(
            "Units and the ops centre authenticate with `Authorization: Bearer <token>` (tokens from "
            "`cityloop units token UNIT_ID`). Open311 POSTs need an `api_key` form field. Open311 answers in JSON or "
            "XML, as the path ends (docs/OPEN311.md)."
        ),
        lifespan=lifespan,
        default_response_class=Utf8JSONResponse,
        docs_url=None,  # served by streams.web with the Swagger UI the package ships (FastAPI's loads it from a CDN)
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body=settings.api_max_body_bytes)
    read_origins, post_origins = settings.open311_cors
    app.add_middleware(Open311Cors, read_origins=read_origins, post_origins=post_origins)
    app.include_router(discovery.router)
    app.include_router(open311.router)
    app.include_router(open311_updates.router)
    app.include_router(units.router)
    app.include_router(ops.router)
    app.include_router(board.router)
    app.include_router(sensors.router)
    app.include_router(connectors.router)
    web.mount(app, tiles_origin=settings.map_tiles_origin)

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()

        def count(status: str) -> None:
            template = _template(request)  # route templates only: a bounded label
            metrics.API_REQUESTS.labels(metrics.method_label(request.method), template, status).inc()
            metrics.API_SECONDS.labels(template).observe(time.perf_counter() - started)

        try:
            response = await call_next(request)
        except Exception:
            count("500")  # an unhandled error raises through here; the handler outside this middleware answers 500
            raise
        count(str(response.status_code))
        return response

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.API_REGISTRY).decode(), media_type=CONTENT_TYPE_LATEST)

    live = "Live while the process and its event loop answer (Redis is not asked)"

    @app.get(health.LIVENESS_PATH, tags=["operations"], summary=live)
    async def livez() -> dict[str, Any]:
        # Redis is not asked: an outage of Redis would otherwise restart every API replica, and a restarted API
        # waits for Redis before it starts. Answering at all is the proof: the event loop ran this handler.
        return {"status": "alive", "city": pack.name, "city_version": pack.version}

    async def readiness(request: Request) -> JSONResponse:
        ctx: ApiContext = request.app.state.ctx
        error = await health.answers(ctx.store.ping)
        verdict = health.api_readiness(error)
        return JSONResponse(verdict.body(city=pack.name, city_version=pack.version), status_code=verdict.http_status)

    for path, summary in ((health.READINESS_PATH, "Ready while Redis answers (503 while it does not)"),
                          (health.OLD_READINESS_PATH, "The readiness (/readyz) under its older name")):  # fmt: skip
        app.add_api_route(path, readiness, methods=["GET"], tags=["operations"], response_class=JSONResponse,
                          summary=summary)  # fmt: skip

    return app


def _template(request: Request) -> str:
    """The path template of the route that served a request ("unmatched" if none did)."""
    route = request.scope.get("route")
    if route is not None:
        return str(route.path)
    for candidate in request.app.router.routes:
        match, _ = candidate.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


__all__ = ["create_api", "development_key_refusal"]
