"""Open311 Service Discovery (required with GeoReport v2): where the endpoint is, what it speaks, whom to ask.

Served at ``/open311/discovery.{json,xml}`` (the spec's URL ends in ``/discovery``) and, for clients that look for it
beside the other resources, at ``/open311/v2/discovery.{json,xml}``. The endpoint's ``url`` is
``CITYLOOP_OPEN311_PUBLIC_URL`` when set (the address the public uses, behind a proxy), else the request's base URL.
``changeset`` is when the city pack (its services) last changed: the time of its newest file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from streams.api.auth import context
from streams.api.context import ApiContext
from streams.api.open311_formats import JSON_MEDIA, format_of_path, respond
from streams.ids import iso

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
router = APIRouter(prefix="/open311", tags=["Open311 GeoReport v2"])
Ctx = Annotated[ApiContext, Depends(context)]


@cache
def changeset(pack_path: Path) -> str:
    """The newest modification time of the pack's files (ISO 8601, UTC)."""
    files = [pack_path] if pack_path.is_file() else [p for p in pack_path.rglob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in files), default=0.0)
    return iso(datetime.fromtimestamp(int(newest), UTC))


def discovery(ctx: ApiContext, base_url: str) -> dict[str, Any]:
    settings = ctx.settings
    root = (settings.open311_public_url or base_url).rstrip("/")
    stamp = changeset(ctx.pack.path)
    return {
        "changeset": stamp,
        "contact": settings.open311_contact,
        "key_service": settings.open311_key_service,
        "endpoints": [{"specification": SPECIFICATION, "url": f"{root}/open311/v2", "changeset": stamp,
                       "type": settings.open311_endpoint_type, "formats": ["text/xml", JSON_MEDIA.split(";")[0]]}],
    }  # fmt: skip


_SUMMARY = "Service Discovery: the GeoReport v2 endpoint, its formats and contacts"


@router.get("/discovery.xml", summary=_SUMMARY)
@router.get("/discovery.json", summary=_SUMMARY)
@router.get("/v2/discovery.xml", summary=_SUMMARY + " (also beside the GeoReport v2 resources)")
@router.get("/v2/discovery.json", summary=_SUMMARY + " (also beside the GeoReport v2 resources)")
async def discover(request: Request, ctx: Ctx) -> Response:
    return respond(format_of_path(request.url.path), "discovery", discovery(ctx, str(request.base_url)))
