"""Open311 GeoReport v2 in both of its formats: services, service definitions, posting and reading requests, tokens.

Every route answers in the format its path ends with: ``.xml`` (the standard's required format) or ``.json``
(streams/api/open311_formats.py); errors too. What clients send is read by streams/api/open311_input.py.

A posted request becomes a citizen report on ``<prefix>.reports`` (source ``open311``) whose ``report_id`` is the
``service_request_id``, made here before the report is written: the id is known at once, so POST answers with it
(and no token). A request located by ``address_string`` or ``address_id`` alone is written without coordinates; the
worker puts it in the triage queue until a person sets its location (docs/OPEN311.md), and it reads open,
"awaiting location". A request's status follows the work order its report opened or joined (following merges), so
every report merged into an incident closes with it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from feedback.views import open311_status
from streams.api.auth import context
from streams.api.context import ApiContext
from streams.api.errors import ApiError
from streams.api.open311_formats import format_of_path, respond
from streams.api.open311_input import coordinates, field, listed, read_form, window
from streams.ids import iso

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])
Ctx = Annotated[ApiContext, Depends(context)]

MAX_WINDOW = timedelta(days=90)
MAX_ROWS = 1000
AWAITING_LOCATION = "Received; awaiting location: a person will place the address on the map, then route it."
_ERRORS = {400: {"description": "Invalid request: [{code, description}] (<errors> in XML)"},
           403: {"description": "Missing or invalid api_key"}, 404: {"description": "Not found"}}  # fmt: skip
_FORMATS = {"content": {"application/json": {}, "text/xml": {"schema": {"type": "string"}}}}
_DEFINITION = "A service's definition (its attributes: none here)"
_LISTING = "Requests, newest first (at most 90 days and 1,000 rows)"
_TOKEN = "The request id behind a token (tokens of requests posted before ids were returned at once)"
_POST_FIELDS = (
    "api_key",
    "service_code",
    "lat",
    "long",
    "address_string",
    "address_id",
    "description",
    "email",
    "device_id",
    "account_id",
    "first_name",
    "last_name",
    "phone",
    "media_url",
    "jurisdiction_id",
)


def _format(request: Request) -> str:
    """Each route is served at ``.json`` and ``.xml``: the path says which."""
    return format_of_path(request.url.path)


def _service(ctx: ApiContext, code: str) -> dict[str, Any]:
    category = ctx.pack.category(code)
    if category is None:
        raise ApiError(404, "not_found", f"service_code {code!r} is not offered; see services.{{json,xml}}")
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": category.description or category.name,
        "metadata": False,
        "type": category.type,
        "keywords": ",".join(category.keywords),
        "group": category.group,
    }


@router.get("/services.xml", summary="The services (categories) offered", responses={**_ERRORS, 200: _FORMATS})
@router.get("/services.json", summary="The services (categories) offered", responses={**_ERRORS, 200: _FORMATS})
async def services(request: Request, ctx: Ctx) -> Response:
    return respond(_format(request), "services", [_service(ctx, c.code) for c in ctx.pack.spec.categories])


@router.get("/services/{service_code}.xml", summary=_DEFINITION, responses={**_ERRORS, 200: _FORMATS})
@router.get("/services/{service_code}.json", summary=_DEFINITION, responses={**_ERRORS, 200: _FORMATS})
async def service_definition(service_code: str, request: Request, ctx: Ctx) -> Response:
    _service(ctx, service_code)
    return respond(_format(request), "service_definition", {"service_code": service_code, "attributes": []})


_POSTING = {
    "summary": "Post a service request (form-encoded, UTF-8; api_key required; lat+long, address_string or address_id)",
    "status_code": 201,
    "responses": {**_ERRORS, 201: {"description": "[{service_request_id, service_notice, account_id}]", **_FORMATS},
                  413: {"description": "Body too large"}},
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["api_key", "service_code"],
        "properties": {name: {"type": "string"} for name in _POST_FIELDS}}}}}},
}  # fmt: skip


@router.post("/requests.xml", **_POSTING)
@router.post("/requests.json", **_POSTING)
async def post_request(request: Request, ctx: Ctx) -> Response:
    fmt = _format(request)
    form = await read_form(request)
    key = field(form, "api_key")
    if key is None:
        raise ApiError(403, "forbidden", "api_key is required to post a request")
    if key not in ctx.settings.open311_keys:
        raise ApiError(403, "forbidden", "api_key is not valid")
    code = field(form, "service_code")
    if code is None:
        raise ApiError(400, "missing_field", "service_code is required")
    category = ctx.pack.category(code)
    if category is None:
        raise ApiError(404, "not_found", f"service_code {code!r} is not offered; see services.{fmt}")
    point = coordinates(form)
    address, address_id = field(form, "address_string"), field(form, "address_id")
    if point is None and address is None and address_id is None:
        raise ApiError(400, "missing_field", "give the location: lat and long, or an address_string or address_id")
    description = field(form, "description")
    media_url = field(form, "media_url")
    if media_url is not None and not media_url.startswith(("http://", "https://")):
        raise ApiError(400, "invalid_request", "media_url must be an http(s) URL")
    now = ctx.clock()
    request_id = f"o311-{secrets.token_hex(10)}"
    reporter = {name: value for name in ("email", "first_name", "last_name", "phone", "device_id")
                if (value := field(form, name)) is not None}  # fmt: skip
    report: dict[str, Any] = {"report_id": request_id, "source": "open311", "text": description or category.name,
                              "reported_at": iso(now), "service_code": code}  # fmt: skip
    if point is not None:
        report["lat"], report["lon"] = point
    for name, value in (("address", address), ("address_id", address_id), ("media_url", media_url),
                        ("reporter", reporter or None)):  # fmt: skip
        if value is not None:
            report[name] = value
    saved = {"service_request_id": request_id, "service_code": code, "service_name": category.name,
             "description": description, "lat": point and point[0], "long": point and point[1], "address": address,
             "address_id": address_id, "media_url": media_url, "requested_datetime": iso(now),
             "account_id": field(form, "account_id")}  # fmt: skip
    await ctx.store.save_request(saved, None, now)
    try:
        await ctx.writer.write(ctx.topics.reports, request_id, report)
    except Exception:
        await ctx.store.forget_request(request_id, None)
        raise
    notice = f"Thank you. Follow the request at requests/{request_id}.{fmt}."
    if point is None:
        notice += " It will be routed once a person has placed the address on the map."
    body = [{"service_request_id": request_id, "service_notice": notice, "account_id": saved["account_id"]}]
    return respond(fmt, "service_requests", body, status=201)


async def _view(ctx: ApiContext, saved: dict[str, Any]) -> dict[str, Any]:
    request_id = saved["service_request_id"]
    incident = await ctx.incident_of_report(request_id)
    order = None if incident is None else await ctx.final_order(incident)
    status = open311_status(order, ctx.unit_names, ctx.calendar)
    if order is None and saved.get("lat") is None:
        status["status_notes"] = AWAITING_LOCATION
    elif order is None and await ctx.in_triage(request_id):
        status["status_notes"] = "Received; waiting for a person to choose the right team."
    return {
        "service_request_id": request_id,
        "status": status["status"],
        "status_notes": status["status_notes"],
        "service_name": saved["service_name"],
        "service_code": saved["service_code"],
        "description": saved.get("description"),
        "agency_responsible": status["agency_responsible"],
        "service_notice": None,
        "requested_datetime": saved["requested_datetime"],
        "updated_datetime": status["updated_datetime"] or saved["requested_datetime"],
        "expected_datetime": status["expected_datetime"],
        "address": saved.get("address"),
        "address_id": saved.get("address_id"),
        "zipcode": None,
        "lat": saved.get("lat"),
        "long": saved.get("long"),
        "media_url": saved.get("media_url"),
    }


@router.get("/requests.xml", summary=_LISTING, responses={**_ERRORS, 200: _FORMATS})
@router.get("/requests.json", summary=_LISTING, responses={**_ERRORS, 200: _FORMATS})
async def list_requests(
    request: Request,
    ctx: Ctx,
    service_request_id: Annotated[str | None, Query(max_length=4000)] = None,
    service_code: Annotated[str | None, Query(max_length=2000)] = None,
    start_date: Annotated[str | None, Query(max_length=64)] = None,
    end_date: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Filters as in GeoReport v2; ``service_request_id`` (comma-separated) overrides the others; an empty
    argument is the same as an absent one."""
    fmt = _format(request)
    ids = listed(service_request_id)
    if ids:
        saved = [r for r in await ctx.store.requests(ids) if r is not None]
        return respond(fmt, "service_requests", [await _view(ctx, r) for r in saved])
    statuses = set(listed(status))
    if not statuses <= {"open", "closed"}:
        raise ApiError(400, "invalid_request", "status must be open, closed or both (comma-separated)")
    start, end = window(start_date, end_date, ctx.clock(), MAX_WINDOW)
    codes = set(listed(service_code))
    result: list[dict[str, Any]] = []
    candidates = await ctx.store.request_ids_between(start, end, limit=MAX_ROWS * 4)
    for saved in await ctx.store.requests(candidates):
        if saved is None or (codes and saved["service_code"] not in codes):
            continue
        view = await _view(ctx, saved)
        if statuses and view["status"] not in statuses:
            continue
        result.append(view)
        if len(result) >= MAX_ROWS:
            break
    return respond(fmt, "service_requests", result)


@router.get("/requests/{service_request_id}.xml", summary="One request", responses={**_ERRORS, 200: _FORMATS})
@router.get("/requests/{service_request_id}.json", summary="One request", responses={**_ERRORS, 200: _FORMATS})
async def get_request(service_request_id: str, request: Request, ctx: Ctx) -> Response:
    (saved,) = await ctx.store.requests([service_request_id]) if len(service_request_id) <= 128 else [None]
    if saved is None:
        raise ApiError(404, "not_found", f"no request {service_request_id}")
    return respond(_format(request), "service_requests", [await _view(ctx, saved)])


@router.get("/tokens/{token}.xml", summary=_TOKEN, responses={**_ERRORS, 200: _FORMATS})
@router.get("/tokens/{token}.json", summary=_TOKEN, responses={**_ERRORS, 200: _FORMATS})
async def token_lookup(token: str, request: Request, ctx: Ctx) -> Response:
    request_id = await ctx.store.request_of_token(token) if len(token) <= 128 else None
    if request_id is None:
        raise ApiError(404, "not_found", f"no request for token {token}")
    return respond(_format(request), "service_requests", [{"service_request_id": request_id, "token": token}])
