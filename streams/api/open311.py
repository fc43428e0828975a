"""Open311 GeoReport v2 (JSON): services, posting a request, reading requests and tokens.

A posted request becomes a citizen report on ``<prefix>.reports`` (source
``open311``) whose ``report_id`` is the ``service_request_id``, so the id is
known at once; a token is returned as well for clients that use the token
flow. A request's status follows the work order its report opened or joined
(following merges), so every report merged into an incident closes with it.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from feedback.views import open311_status
from streams.api.auth import context
from streams.api.context import ApiContext
from streams.api.errors import ApiError
from streams.ids import iso, parse_iso

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])
Ctx = Annotated[ApiContext, Depends(context)]

MAX_DESCRIPTION = 4000
MAX_WINDOW = timedelta(days=90)
MAX_ROWS = 1000
_LIMITS = {"address_string": 512, "email": 254, "first_name": 100, "last_name": 100, "phone": 64,
           "device_id": 128, "account_id": 128, "media_url": 2048, "service_code": 64,
           "jurisdiction_id": 128}  # fmt: skip
_ERRORS = {400: {"description": "Invalid request: [{code, description}]"},
           403: {"description": "Invalid api_key"}, 404: {"description": "Not found"}}  # fmt: skip


def _service(ctx: ApiContext, code: str) -> dict[str, Any]:
    category = ctx.pack.category(code)
    if category is None:
        raise ApiError(404, "not_found", f"service_code {code!r} is not offered")
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": category.description or category.name,
        "metadata": False,
        "type": "realtime",
        "keywords": ",".join(category.keywords),
        "group": category.group,
    }


@router.get("/services.json", summary="The services (categories) offered", responses=_ERRORS)
async def services(ctx: Ctx) -> list[dict[str, Any]]:
    return [_service(ctx, c.code) for c in ctx.pack.spec.categories]


@router.get("/services/{service_code}.json", summary="A service's definition (its attributes)", responses=_ERRORS)
async def service_definition(service_code: str, ctx: Ctx) -> dict[str, Any]:
    _service(ctx, service_code)
    return {"service_code": service_code, "attributes": []}


def _field(form: Any, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise ApiError(400, "invalid_request", f"{name} must be a text field, not a file")
    if value is None or not str(value).strip():
        if required:
            raise ApiError(400, "missing_field", f"{name} is required")
        return None
    text = str(value).strip()
    limit = _LIMITS.get(name, MAX_DESCRIPTION)
    if len(text) > limit:
        raise ApiError(400, "too_long", f"{name} is {len(text)} characters; the limit is {limit}")
    return text


def _coordinate(form: Any, name: str, low: float, high: float) -> float:
    text = _field(form, name)
    if text is None:
        raise ApiError(400, "missing_field", "lat and long are required (this server cannot locate an address_string)")
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "wrong_type", f"{name} must be a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ApiError(400, "out_of_range", f"{name} must be between {low} and {high}")
    return value


@router.post(
    "/requests.json",
    summary="Post a service request (form-encoded, api_key required)",
    status_code=201,
    responses={**_ERRORS, 201: {"description": "[{service_request_id, token, service_notice, account_id}]"},
               413: {"description": "Body too large"}},  # fmt: skip
    openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["api_key", "service_code", "lat", "long"],
        "properties": {name: {"type": "string"} for name in ("api_key", "service_code", "lat", "long",
                                                             "address_string", "description", "email", "device_id",
                                                             "account_id", "first_name", "last_name", "phone",
                                                             "media_url", "jurisdiction_id")}}}}}},
)  # fmt: skip
async def post_request(request: Request, ctx: Ctx) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise ApiError(400, "invalid_request", "post the request form-encoded (application/x-www-form-urlencoded)")
    form = await request.form(max_files=0, max_fields=200)
    key = _field(form, "api_key", required=True)
    if key not in ctx.settings.open311_keys:
        raise ApiError(403, "forbidden", "api_key is not valid")
    code = _field(form, "service_code", required=True)
    assert code is not None
    if ctx.pack.category(code) is None:
        raise ApiError(400, "unknown_service", f"service_code {code!r} is not offered; see services.json")
    lat = _coordinate(form, "lat", -90, 90)
    lon = _coordinate(form, "long", -180, 180)
    description = _field(form, "description")
    media_url = _field(form, "media_url")
    if media_url is not None and not media_url.startswith(("http://", "https://")):
        raise ApiError(400, "invalid_request", "media_url must be an http(s) URL")
    now = ctx.clock()
    request_id = f"o311-{secrets.token_hex(10)}"
    token = secrets.token_urlsafe(16)
    reporter = {name: value for name in ("email", "first_name", "last_name", "phone", "device_id")
                if (value := _field(form, name)) is not None}  # fmt: skip
    category = ctx.pack.category(code)
    assert category is not None
    report: dict[str, Any] = {"report_id": request_id, "source": "open311",
                              "text": description or category.name, "lat": lat, "lon": lon,
                              "reported_at": iso(now), "service_code": code}  # fmt: skip
    address = _field(form, "address_string")
    for name, value in (("address", address), ("media_url", media_url), ("reporter", reporter or None)):
        if value is not None:
            report[name] = value
    saved = {"service_request_id": request_id, "service_code": code, "service_name": category.name,
             "description": description, "lat": lat, "long": lon, "address": address, "media_url": media_url,
             "requested_datetime": iso(now), "account_id": _field(form, "account_id")}  # fmt: skip
    await ctx.store.save_request(saved, token, now)
    try:
        await ctx.writer.write(ctx.topics.reports, request_id, report)
    except Exception:
        await ctx.store.forget_request(request_id, token)
        raise
    notice = f"Thank you. Follow the request at requests/{request_id}.json."
    body = [{"service_request_id": request_id, "token": token, "service_notice": notice,
             "account_id": saved["account_id"]}]  # fmt: skip
    return JSONResponse(body, status_code=201)


async def _view(ctx: ApiContext, saved: dict[str, Any]) -> dict[str, Any]:
    request_id = saved["service_request_id"]
    incident = await ctx.incident_of_report(request_id)
    order = None if incident is None else await ctx.final_order(incident)
    status = open311_status(order, ctx.unit_names, ctx.calendar)
    if order is None and await ctx.in_triage(request_id):
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
        "address_id": None,
        "zipcode": None,
        "lat": saved["lat"],
        "long": saved["long"],
        "media_url": saved.get("media_url"),
    }


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = parse_iso(text)
    except ValueError:
        raise ApiError(400, "bad_timestamp", f"{name} must be an ISO 8601 time, e.g. 2026-11-26T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _list(text: str | None, limit: int = 100) -> list[str]:
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    if len(items) > limit:
        raise ApiError(400, "too_many", f"at most {limit} values in one filter")
    return items


@router.get("/requests.json", summary="Requests, newest first (at most 90 days and 1,000 rows)", responses=_ERRORS)
async def list_requests(
    ctx: Ctx,
    service_request_id: Annotated[str | None, Query(max_length=4000)] = None,
    service_code: Annotated[str | None, Query(max_length=2000)] = None,
    start_date: Annotated[str | None, Query(max_length=64)] = None,
    end_date: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> list[dict[str, Any]]:
    """Filters as in GeoReport v2; ``service_request_id`` (comma-separated) overrides the others."""
    ids = _list(service_request_id)
    if ids:
        saved = [r for r in await ctx.store.requests(ids) if r is not None]
        return [await _view(ctx, r) for r in saved]
    statuses = set(_list(status))
    if not statuses <= {"open", "closed"}:
        raise ApiError(400, "invalid_request", "status must be open, closed or both (comma-separated)")
    end = _moment(end_date, "end_date") or ctx.clock()
    start = _moment(start_date, "start_date") or end - MAX_WINDOW
    if end < start:
        raise ApiError(400, "invalid_request", "end_date is before start_date")
    if end - start > MAX_WINDOW:
        raise ApiError(400, "invalid_request", "start_date to end_date may span at most 90 days")
    codes = set(_list(service_code))
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
    return result


@router.get("/requests/{service_request_id}.json", summary="One request", responses=_ERRORS)
async def get_request(service_request_id: str, ctx: Ctx) -> list[dict[str, Any]]:
    (saved,) = await ctx.store.requests([service_request_id]) if len(service_request_id) <= 128 else [None]
    if saved is None:
        raise ApiError(404, "not_found", f"no request {service_request_id}")
    return [await _view(ctx, saved)]


@router.get("/tokens/{token}.json", summary="The request id behind a token", responses=_ERRORS)
async def token_lookup(token: str, ctx: Ctx) -> list[dict[str, Any]]:
    request_id = await ctx.store.request_of_token(token) if len(token) <= 128 else None
    if request_id is None:
        raise ApiError(404, "not_found", f"no request for token {token}")
    return [{"service_request_id": request_id, "token": token}]
