"""Open311 service request updates (the GeoReport v2 extension FixMyStreet and mySociety's open311-adapter speak):
the feed front ends poll to tell reporters what happened, and updates posted by an authorised system.

``GET servicerequestupdates.{xml,json}?start_date=&end_date=`` lists ``update_id, service_request_id, status,
updated_datetime, description, media_url``, oldest first. The worker writes what reporters are told per work order
(feedback/updates.py, ``ns:updates``); here each entry goes to every Open311 request that follows that order: the
requests whose reports opened or joined its incident, and those of orders merged into it.

``POST servicerequestupdates.{xml,json}`` with ``api_key``, ``service_request_id``, ``status`` (the extension's
upper-case values), ``description``, ``media_url``, ``update_id`` (the poster's own id: a retried post is applied
once). A unit's token as ``api_key`` acts for that unit: on an order the unit holds, a status maps to one lifecycle
event (:data:`CHANGES`). Anything else (a front end's key, a unit that does not hold the order, a status that moves
nothing) is recorded as a note on the request's feed. docs/OPEN311.md has the mapping and why.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from feedback import State, WorkOrder
from feedback.updates import STATUS_OF_STATE, TEXT_LIMIT, describe, status_of, update_id
from streams.api.actions import submitted
from streams.api.auth import context
from streams.api.context import ApiContext
from streams.api.errors import ApiError, request_id
from streams.api.open311_formats import format_of_path, respond
from streams.api.open311_input import field, moment, read_form, window
from streams.ids import iso
from streams.outcomes import event

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])
Ctx = Annotated[ApiContext, Depends(context)]

MAX_WINDOW = timedelta(days=90)
MAX_ROWS = 1000
SCAN_CHUNK = 2000  # entries read per round trip
SCAN_MAX = 50_000  # entries read at most for one answer (entries of orders without Open311 requests give no row)
MERGE_HOPS = 8
#: the extension's statuses (mySociety's status_extended), as posted
STATUSES = frozenset({"OPEN", "CLOSED", "FIXED", "IN_PROGRESS", "ACTION_SCHEDULED", "INVESTIGATING", "DUPLICATE",
                      "NOT_COUNCILS_RESPONSIBILITY", "NO_FURTHER_ACTION", "INTERNAL_REFERRAL", "REOPEN",
                      "FOR_TRIAGE"})  # fmt: skip
S = State
#: what a posted status does to an order its poster's unit holds, by the order's state
CHANGES: dict[str, dict[State, str]] = {
    "ACTION_SCHEDULED": {S.DISPATCHED: "ack"},
    "IN_PROGRESS": {S.ACKNOWLEDGED: "start", S.WAITING: "resume"},
    "FIXED": {S.IN_PROGRESS: "resolve"},
    "CLOSED": {S.IN_PROGRESS: "resolve"},
    "NOT_COUNCILS_RESPONSIBILITY": {S.DISPATCHED: "reject", S.ACKNOWLEDGED: "reject"},
}
#: states from which such a status would skip a step of the lifecycle: refused, rather than noted and lost
TOO_SOON: dict[str, frozenset[State]] = {
    "IN_PROGRESS": frozenset({S.DISPATCHED}),
    "FIXED": frozenset({S.DISPATCHED, S.ACKNOWLEDGED, S.WAITING}),
    "CLOSED": frozenset({S.DISPATCHED, S.ACKNOWLEDGED, S.WAITING}),
    "NOT_COUNCILS_RESPONSIBILITY": frozenset({S.IN_PROGRESS, S.WAITING}),
}
_ERRORS = {400: {"description": "Invalid request: [{code, description}] (<errors> in XML)"},
           403: {"description": "Missing or invalid api_key"}, 404: {"description": "No such request"},
           409: {"description": "The status cannot apply to the request as it stands"}}  # fmt: skip
_FORMATS = {"content": {"application/json": {}, "text/xml": {"schema": {"type": "string"}}}}
_FEED = "Updates of requests (what reporters are told), oldest first: at most 90 days and 1,000 rows"
_POST_FIELDS = ("api_key", "service_request_id", "status", "description", "media_url", "update_id", "update_id_ext",
                "updated_datetime", "email", "first_name", "last_name", "jurisdiction_id")  # fmt: skip


# ------------------------------------------------------------------------------------------------------- the feed


async def _followers(ctx: ApiContext, incidents: set[str]) -> dict[str, list[str]]:
    """incident -> the Open311 requests that follow its order (its own reports', and merged orders' reports).

    An order's reports are those its changes recorded (kept as long as the feed) and those the incident index
    still lists (it also knows reports that joined while the incident waited in triage, for a week).
    """
    groups = {i: {i} for i in incidents}
    edge = {i: {i} for i in incidents}
    recorded: dict[str, list[str]] = {}
    for _ in range(MERGE_HOPS):
        level = {x for xs in edge.values() for x in xs}
        if not level:
            break
        links, sources = await ctx.orders.followers(sorted(level))
        recorded |= sources
        edge = {root: {m for x in xs for m in links.get(x, []) if m not in groups[root]} for root, xs in edge.items()}
        for root, xs in edge.items():
            groups[root] |= xs
    every = sorted(set().union(*groups.values())) if groups else []
    indexed = await ctx.incidents.source_ids_many(every)
    listed = {i: set(recorded.get(i, ())) | set(found) for i, found in zip(every, indexed, strict=True)}
    reports = {s.removeprefix("report:") for sources in listed.values() for s in sources if s.startswith("report:")}
    known = {r for r, saved in zip(sorted(reports), await ctx.store.requests(sorted(reports)), strict=True) if saved}
    return {root: sorted({s.removeprefix("report:") for i in members for s in listed[i]} & known)
            for root, members in groups.items()}  # fmt: skip


def _row(entry: dict[str, Any], request: str, names: dict[str, str]) -> dict[str, Any]:
    return {
        "update_id": update_id(request, str(entry["event_id"])),
        "service_request_id": request,
        "status": status_of(entry),
        "updated_datetime": entry["at"],
        "description": describe(entry, names),
        "media_url": entry.get("media_url") or "",
    }


@router.get("/servicerequestupdates.xml", summary=_FEED, responses={**_ERRORS, 200: _FORMATS})
@router.get("/servicerequestupdates.json", summary=_FEED, responses={**_ERRORS, 200: _FORMATS})
async def list_updates(
    request: Request,
    ctx: Ctx,
    start_date: Annotated[str | None, Query(max_length=64)] = None,
    end_date: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Updates timed from ``start_date`` to ``end_date`` (both included), oldest first; as for ``requests``, by
    default the last 90 days. A poller asks again from the last ``updated_datetime`` it saw (ids are stable)."""
    start, end = window(start_date, end_date, ctx.clock(), MAX_WINDOW)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    names, rows, offset = ctx.unit_names, [], 0
    while len(rows) < MAX_ROWS and offset < SCAN_MAX:
        entries = await ctx.orders.updates_between(start_ms, end_ms, offset, SCAN_CHUNK)
        offset += len(entries)
        followers = await _followers(ctx, {str(e["incident_id"]) for e in entries if e.get("incident_id")})
        noted = [str(e["request_id"]) for e in entries if e.get("request_id")]
        known = {r for r, saved in zip(noted, await ctx.store.requests(noted), strict=True) if saved}
        for entry in entries:
            requests = [entry["request_id"]] if entry.get("request_id") in known else []
            for request_of in requests or followers.get(str(entry.get("incident_id")), []):
                rows.append(_row(entry, request_of, names))
        if len(entries) < SCAN_CHUNK:
            break
    return respond(format_of_path(request.url.path), "service_request_updates", rows[:MAX_ROWS])


# ------------------------------------------------------------------------------------------------ posted updates


async def _poster(ctx: ApiContext, key: str | None) -> tuple[str, str | None]:
    """(who, unit): a front end's key acts for no unit; a unit's token (``cityloop units token``) for its unit, and
    ``who`` names the unit and the token's holder (written as the event's ``by``)."""
    if key is None:
        raise ApiError(403, "forbidden", "api_key is required to post an update")
    if key in ctx.settings.open311_keys:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16], None
    owner = await ctx.store.token_owner(key)
    if owner is None or ctx.pack.unit(owner["unit_id"]) is None:
        raise ApiError(403, "forbidden", "api_key is not valid")
    return f"unit:{owner['unit_id']}:{owner.get('holder') or owner['unit_id']}", owner["unit_id"]


def _change(status: str, order: WorkOrder | None, unit: str | None) -> str | None:
    """The lifecycle event a posted status makes, None for a note; a status that would skip a step is refused."""
    if order is None or unit is None or order.holder != unit:
        return None
    kind = CHANGES.get(status, {}).get(order.state)
    if kind is None and order.state in TOO_SOON.get(status, ()):
        raise ApiError(409, "illegal_transition", f"status {status} cannot apply to a request that is "
                       f"{order.state.value.replace('_', ' ')}: post the steps before it first")  # fmt: skip
    return kind


_POSTING = {
    "summary": "Post an update of a request (form-encoded; api_key, service_request_id, status, description)",
    "status_code": 201,
    "responses": {**_ERRORS, 201: {"description": "[{update_id}]", **_FORMATS},
                  202: {"description": "[{update_id}]: accepted, the worker has not applied it yet", **_FORMATS}},
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["api_key", "service_request_id", "status"],
        "properties": {name: {"type": "string"} for name in _POST_FIELDS}}}}}},
}  # fmt: skip


@router.post("/servicerequestupdates.xml", **_POSTING)
@router.post("/servicerequestupdates.json", **_POSTING)
async def post_update(request: Request, ctx: Ctx) -> Response:
    fmt = format_of_path(request.url.path)
    form = await read_form(request)
    who, unit = await _poster(ctx, field(form, "api_key"))
    request_of = field(form, "service_request_id")
    if request_of is None:
        raise ApiError(400, "missing_field", "service_request_id is required")
    status = (field(form, "status") or "").upper()
    if status not in STATUSES:
        raise ApiError(400, "invalid_request", f"status must be one of {', '.join(sorted(STATUSES))}")
    moment(field(form, "updated_datetime"), "updated_datetime")  # checked; CityLoop times an update when it has it
    description, media_url = field(form, "description"), field(form, "media_url")
    if media_url is not None and not media_url.startswith(("http://", "https://")):
        raise ApiError(400, "invalid_request", "media_url must be an http(s) URL")
    (saved,) = await ctx.store.requests([request_of])
    if saved is None:
        raise ApiError(404, "not_found", f"no request {request_of}")
    incident = await ctx.incident_of_report(request_of)
    order = None if incident is None else await ctx.final_order(incident)
    theirs = field(form, "update_id") or field(form, "update_id_ext") or secrets.token_hex(8)
    kind = _change(status, order, unit)
    if kind is None:
        if description is None:
            raise ApiError(400, "missing_field", "description is required: this update is recorded as a note")
        now = ctx.clock()
        claim = hashlib.sha256(f"{who}|{request_of}|{theirs}".encode()).hexdigest()
        current = "open" if order is None else STATUS_OF_STATE[order.state]
        note = {"at": iso(now), "seq": "", "event_id": f"note-{claim[:24]}", "request_id": request_of,
                "type": "note", "status": current, "text": description[:TEXT_LIMIT]}  # fmt: skip
        if media_url:
            note["media_url"] = media_url
        event_id = await ctx.orders.add_note(note, claim)
        return respond(fmt, "service_request_updates", [{"update_id": update_id(request_of, event_id)}], status=201)
    assert order is not None and unit is not None
    fields: dict[str, Any] = {"note": description}
    if kind == "resolve":
        if description is None:
            raise ApiError(400, "missing_field", "description is required: say what was done")
        fields["media_url"] = media_url
    if kind == "reject":
        fields = {"reason_code": "outside_remit", "reason": description}
    record = event(kind, order.incident_id, f"unit:{unit}", ctx.clock(), task_id=order.task_id, unit_id=unit,
                   key=f"o311u:{who}:{theirs}", by=f"open311:{who}", request_id=request_id(request),
                   **{k: v for k, v in fields.items() if v is not None})  # fmt: skip
    outcome = await submitted(ctx, order, record)
    body = [{"update_id": update_id(request_of, record["event_id"])}]
    return respond(fmt, "service_request_updates", body, status=201 if outcome == "applied" else 202)
