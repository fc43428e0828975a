"""The ops centre's API: incidents and tasks with history, the triage queue, decisions on orders, the SLA board."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from feedback import FINISHED, WorkOrder
from feedback.views import open311_status, task_view
from streams.api.actions import lifecycle_record, submit
from streams.api.auth import Caller, context, ops_caller
from streams.api.context import ApiContext
from streams.api.errors import ApiError
from streams.ids import incident_of_task, iso, stable_id, task_id_for
from streams.records import MAX_LAT

router = APIRouter(prefix="/ops", tags=["ops centre"])

Ctx = Annotated[ApiContext, Depends(context)]
Ops = Annotated[Caller, Depends(ops_caller)]
ID_PATTERN = r"^[\x21-\x7e]{1,128}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Decision(_Body):
    category: str = Field(min_length=1, max_length=64, description="The category code the report belongs to.")
    lat: float | None = Field(None, ge=-MAX_LAT, le=MAX_LAT, description="Where it is (WGS84): required for a report "
                              "located by an address only; else it moves the report's point.")  # fmt: skip
    lon: float | None = Field(None, ge=-180, le=180, description="With lat.")


class Verify(_Body):
    note: str | None = Field(None, max_length=2000)


class Reason(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class Assign(_Body):
    unit_id: str = Field(min_length=1, max_length=64, description="The unit that must do it.")
    reason: str = Field(min_length=1, max_length=2000)


class Recategorise(_Body):
    category: str = Field(min_length=1, max_length=64, description="The category code the incident really is.")
    reason: str = Field(min_length=1, max_length=2000)


class Merge(_Body):
    into: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN, description="The incident that carries on.")
    reason: str | None = Field(None, max_length=2000)


async def _record(ctx: ApiContext, incident_id: str) -> dict[str, Any]:
    order = await ctx.order(incident_id)
    sources = await ctx.incidents.source_ids(incident_id)
    triage = await ctx.triage.get(incident_id)
    if order is None and not sources and triage is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    final = await ctx.final_order(incident_id)
    return {
        "incident_id": incident_id,
        "order": None if order is None else task_view(order, ctx.calendar, history=True),
        "sources": sources,
        "said": await ctx.incidents.said(incident_id),
        "triage": triage,
        "reasons": await ctx.reasons.of(incident_id),
        "open311": open311_status(final, ctx.unit_names, ctx.calendar),
    }


@router.get("/incidents/{incident_id}", summary="An incident: its work order with history, sources, triage")
async def incident(incident_id: str, ctx: Ctx, who: Ops) -> dict:
    return await _record(ctx, incident_id)


@router.get("/tasks/{task_id}", summary="A task (any attempt) and the order it belongs to")
async def task(task_id: str, ctx: Ctx, who: Ops) -> dict:
    incident_id = incident_of_task(task_id)
    if incident_id is None:
        raise ApiError(404, "not_found", f"no task {task_id}")
    record = await _record(ctx, incident_id)
    order = record["order"]
    record["current"] = order is not None and order["task_id"] == task_id
    return record


@router.get("/triage", summary="Reports waiting for a person to choose their category")
async def triage(ctx: Ctx, who: Ops, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    waiting = await ctx.triage.waiting(limit)
    return {"waiting": [{"incident_id": incident_id, **item} for incident_id, item in waiting]}


@router.post(
    "/triage/{incident_id}/decision",
    summary="Decide a waiting report's category (dispatches it)",
    responses={200: {"description": "Dispatched"}, 202: {"description": "Accepted, not dispatched yet"}},
)
async def decide(incident_id: str, body: Decision, ctx: Ctx, who: Ops) -> JSONResponse:
    if ctx.pack.category(body.category) is None:
        raise ApiError(400, "unknown_category", f"category {body.category!r} is not in {ctx.pack.name}")
    item = await ctx.triage.get(incident_id)
    if item is None:
        raise ApiError(404, "not_found", f"incident {incident_id} is not in the triage queue")
    if (body.lat is None) != (body.lon is None):
        raise ApiError(400, "invalid_request", "lat and lon go together")
    if body.lat is None and item.get("lat") is None:
        raise ApiError(400, "missing_location", f"incident {incident_id} has only an address ({item.get('address')}): "
                       "give its lat and lon")  # fmt: skip
    if not await ctx.triage.is_waiting(incident_id) or await ctx.order(incident_id) is not None:
        raise ApiError(409, "already_decided", f"incident {incident_id} has been decided already")
    now = ctx.clock()
    record = {"schema": 1, "event_id": stable_id("evt", incident_id, "triage_decision", who.holder, iso(now)),
              "type": "triage_decision", "incident_id": incident_id, "category": body.category,
              "decided_by": who.holder, "actor": who.ops_actor, "at": iso(now)}  # fmt: skip
    if body.lat is not None:
        record["lat"], record["lon"] = body.lat, body.lon
    await ctx.writer.write(ctx.topics.feedback, incident_id, record)
    deadline = asyncio.get_running_loop().time() + ctx.settings.api_wait_s
    while asyncio.get_running_loop().time() < deadline:
        order = await ctx.order(incident_id)
        if order is not None:
            return JSONResponse({"status": "dispatched", "task": task_view(order, ctx.calendar)})
        await asyncio.sleep(0.05)
    return JSONResponse({"status": "accepted", "event_id": record["event_id"]}, status_code=202)


async def _order(ctx: ApiContext, incident_id: str) -> WorkOrder:
    order = await ctx.order(incident_id)
    if order is None:
        raise ApiError(404, "not_found", f"incident {incident_id} has no work order")
    return order


async def _decide(
    ctx: ApiContext, request: Request, who: Caller, incident_id: str, kind: str, order: WorkOrder | None = None,
    **fields: Any,
) -> JSONResponse:  # fmt: skip
    """The ops centre's event ``kind`` on an order, submitted and answered with the outcome."""
    order = order or await _order(ctx, incident_id)
    return await submit(ctx, order, lifecycle_record(ctx, request, kind, order, who.ops_actor, **fields))


@router.post("/orders/{incident_id}/verify", summary="Verified fixed: the order closes")
async def verify(incident_id: str, body: Verify, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    return await _decide(ctx, request, who, incident_id, "verify", note=body.note)


@router.post("/orders/{incident_id}/reopen", summary="Not fixed (or the reporter says so): back to its unit")
async def reopen(incident_id: str, body: Reason, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    return await _decide(ctx, request, who, incident_id, "reopen", reason=body.reason)


@router.post("/orders/{incident_id}/assign", summary="Arbitrate or reassign: the order goes to this unit")
async def assign(incident_id: str, body: Assign, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    if ctx.pack.unit(body.unit_id) is None:
        raise ApiError(400, "unknown_unit", f"unit {body.unit_id!r} is not in {ctx.pack.name}")
    order = await _order(ctx, incident_id)
    attempt = order.attempt + 1
    return await _decide(ctx, request, who, incident_id, "assign", order, task_id=task_id_for(incident_id, attempt),
                         unit_id=body.unit_id, attempt=attempt, reason=body.reason)  # fmt: skip


@router.post(
    "/orders/{incident_id}/recategorise",
    summary="Change the category: the order is routed again, the old unit is told to drop it, the new one gets it",
)
async def recategorise(incident_id: str, body: Recategorise, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    if ctx.pack.category(body.category) is None:
        raise ApiError(400, "unknown_category", f"category {body.category!r} is not in {ctx.pack.name}")
    order = await _order(ctx, incident_id)
    return await _decide(ctx, request, who, incident_id, "recategorise", order, category=body.category,
                         attempt=order.attempt, reason=body.reason)  # fmt: skip


@router.post("/orders/{incident_id}/cancel", summary="Close without action")
async def cancel(incident_id: str, body: Reason, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    return await _decide(ctx, request, who, incident_id, "cancel", reason=body.reason)


@router.post("/orders/{incident_id}/merge", summary="Merge into another incident's order (its reports follow it)")
async def merge(incident_id: str, body: Merge, request: Request, ctx: Ctx, who: Ops) -> JSONResponse:
    order = await _order(ctx, incident_id)
    target = await ctx.order(body.into)
    if target is None:
        raise ApiError(400, "unknown_order", f"incident {body.into} has no work order to merge into")
    if target.state in FINISHED:
        why = f"incident {body.into} is {target.state.value}; merge into an open one"
        raise ApiError(409, "illegal_transition", why)
    return await _decide(ctx, request, who, incident_id, "merge_order", order, into=body.into, reason=body.reason)


def _department(ctx: ApiContext, unit_id: str) -> str:
    """The department a unit belongs to (a department is its own; "-" for a unit of none, such as the ops centre)."""
    unit = ctx.pack.unit(unit_id)
    if unit is None:
        return "-"
    return unit.id if unit.kind == "department" else unit.department or "-"


@router.get("/sla", summary="The live SLA board: yellow and red orders by unit, department and category")
async def sla_board(ctx: Ctx, who: Ops, limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    lights = await ctx.orders.lights(limit)
    board: dict[str, Any] = {"at": iso(ctx.clock()), "counts": {}, "by_unit": {}, "by_department": {},
                             "by_category": {}, "orders": {}}  # fmt: skip
    for light, orders in lights.items():
        board["counts"][light] = len(orders)
        for unit, count in Counter(o.unit_id for o in orders).items():
            board["by_unit"].setdefault(unit, {"yellow": 0, "red": 0})[light] = count
        for department, count in Counter(_department(ctx, o.unit_id) for o in orders).items():
            board["by_department"].setdefault(department, {"yellow": 0, "red": 0})[light] = count
        for category, count in Counter(o.category or "-" for o in orders).items():
            board["by_category"].setdefault(category, {"yellow": 0, "red": 0})[light] = count
        board["orders"][light] = [task_view(o, ctx.calendar) for o in orders]
    return board
