"""The ops centre's board: the city to draw, every open incident, and a live feed of their changes.

``GET /ops/city`` gives what the map draws under the incidents (the city pack's
layers as GeoJSON, its units and categories); ``GET /ops/board`` every order not
finished and every report waiting for triage, with the id of the feed entry it
is current to; ``GET /ops/board/events`` the feed from there (server-sent events:
``order`` when an order changes, ``triage`` when a report starts waiting,
``triaged`` when it has been decided). A board that reconnects with
``Last-Event-ID`` misses nothing the feed still holds (the last 20,000 changes).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from shapely.geometry import mapping

from dispatch import CityPack
from feedback.views import board_view
from streams.api.auth import Caller, context, ops_caller
from streams.api.context import ApiContext
from streams.api.sse import event_stream

router = APIRouter(prefix="/ops", tags=["ops centre"])

Ctx = Annotated[ApiContext, Depends(context)]
Ops = Annotated[Caller, Depends(ops_caller)]


_documents: dict[tuple[str, str], dict[str, Any]] = {}


def city_document(pack: CityPack) -> dict[str, Any]:
    """The pack as the board draws it; made once per pack and version."""
    key = (pack.name, pack.version)
    if key not in _documents:
        _documents[key] = _document(pack)
    return _documents[key]


def _document(pack: CityPack) -> dict[str, Any]:
    spec = pack.spec
    layers = {
        layer_id: {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "id": feature_id, "properties": {"id": feature_id, "name": name},
                 "geometry": mapping(geometry)}
                for feature_id, name, geometry in zip(layer.feature_ids, layer.names, layer.geometries, strict=True)
            ],
        }
        for layer_id, layer in pack.layers.items()
    }  # fmt: skip
    units = [
        {"id": u.id, "name": u.name, "kind": u.kind, "department": u.department,
         "area": None if u.area is None else u.area.model_dump()}
        for u in spec.units
    ]  # fmt: skip
    categories = [{"code": c.code, "name": c.name, "group": c.group} for c in spec.categories]
    return {"name": pack.name, "version": pack.version, "boundary": spec.boundary, "fallback_unit": spec.fallback_unit,
            "layers": layers, "units": units, "categories": categories}  # fmt: skip


def tiles(ctx: ApiContext) -> dict[str, Any] | None:
    """The city's tile server (``CITYLOOP_MAP_TILES``) and its attribution, or None: the areas only."""
    settings = ctx.settings
    return {"url": settings.map_tiles, "attribution": settings.map_attribution} if settings.map_tiles else None


@router.get("/city", summary="The city to draw: its layers (GeoJSON), units and categories")
async def city(ctx: Ctx, who: Ops) -> dict[str, Any]:
    """``tiles``: the city's tile server (``CITYLOOP_MAP_TILES``) and its attribution, or null: the areas only."""
    return {**city_document(ctx.pack), "tiles": tiles(ctx)}


@router.get("/board", summary="Every open incident (orders not finished, reports waiting for triage), for the board")
async def board(ctx: Ctx, who: Ops, limit: Annotated[int, Query(ge=1, le=50_000)] = 20_000) -> dict[str, Any]:
    """``last_event_id`` is the feed entry this answer is current to: follow ``/ops/board/events`` from it."""
    last = await ctx.orders.board_tail()  # read first: a change made meanwhile is in the answer or after this id
    orders = await ctx.orders.open_orders(limit)
    waiting = await ctx.triage.waiting(limit)
    items = [board_view(order, ctx.calendar) for order in orders]
    items += [{"kind": "triage", "incident_id": incident_id, **item} for incident_id, item in waiting]
    return {"last_event_id": last, "items": items}


@router.get(
    "/board/events",
    summary="The board's live feed (server-sent events): order changes, reports waiting for triage, decisions",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def board_events(
    request: Request,
    ctx: Ctx,
    who: Ops,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,20}-\d{1,20}$")] = None,
    since: Annotated[str | None, Query(pattern=r"^\d{1,20}-\d{1,20}$", description="Start after this entry")] = None,
    max_events: Annotated[int | None, Query(ge=1, le=100_000, description="Close after this many events.")] = None,
) -> StreamingResponse:
    start = last_event_id or since or await ctx.orders.board_tail()

    return event_stream(request, lambda last: ctx.orders.board_events(last, block_ms=5000), start, max_events)
