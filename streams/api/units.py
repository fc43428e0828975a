"""The field units' API: my open tasks, one task, acknowledge, start, wait, resume, reject, resolve, a push channel,
and the city to draw a task's map on.

A unit sees and changes only the tasks assigned to it: any other task id
answers 404, exactly as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from feedback import REJECT_REASONS, WorkOrder
from feedback.views import task_view
from streams.api.actions import lifecycle_record, submit
from streams.api.auth import Caller, caller, context
from streams.api.board import city_document, tiles
from streams.api.context import ApiContext
from streams.api.errors import ApiError
from streams.api.sse import event_stream
from streams.ids import incident_of_task

router = APIRouter(prefix="/units/me", tags=["field units"])

RejectCode = Literal[tuple(sorted(REJECT_REASONS))]  # type: ignore[valid-type]
URL_PATTERN = r"^https?://[^\s]{1,2040}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoteBody(_Body):
    note: str | None = Field(None, max_length=2000, description="Optional remark kept in the order's history.")


class WaitBody(_Body):
    reason: str = Field(min_length=1, max_length=2000, description="What the unit needs from the reporter.")


class RejectBody(_Body):
    reason_code: RejectCode = Field(description="Why the task is not this unit's to do.")  # type: ignore[valid-type]
    reason: str | None = Field(None, max_length=2000, description="Required when reason_code is 'other'.")


class ResolveBody(_Body):
    note: str = Field(min_length=1, max_length=2000, description="What was done.")
    media_url: str | None = Field(None, max_length=2048, pattern=URL_PATTERN, description="A photo of the result.")


async def _mine(ctx: ApiContext, who: Caller, task_id: str) -> WorkOrder:
    incident = incident_of_task(task_id)
    order = None if incident is None else await ctx.order(incident)
    if order is None or order.unit_id != who.unit_id or order.task_id != task_id:
        raise ApiError(404, "not_found", f"no task {task_id} for unit {who.unit_id}")
    return order


Ctx = Annotated[ApiContext, Depends(context)]
Who = Annotated[Caller, Depends(caller)]


@router.get("", summary="Who am I")
async def me(ctx: Ctx, who: Who) -> dict:
    unit = ctx.pack.unit(who.unit_id)
    assert unit is not None
    return {"unit_id": unit.id, "name": unit.name, "kind": unit.kind, "department": unit.department,
            "holder": who.holder, "ops_centre": who.is_ops}  # fmt: skip


@router.get("/city", summary="The city to draw my tasks' maps on: its layers (GeoJSON) and its tile server")
async def my_city(ctx: Ctx, who: Who) -> dict[str, Any]:
    """The city pack's layers as the board draws them (each area's id and name), without the ops centre's view of
    the other units and the categories; ``tiles``: the city's tile server and its attribution, or null."""
    document = city_document(ctx.pack)
    return {key: document[key] for key in ("name", "version", "boundary", "layers")} | {"tiles": tiles(ctx)}


@router.get("/tasks", summary="My open tasks (oldest first)")
async def my_tasks(ctx: Ctx, who: Who) -> dict:
    orders = await ctx.orders.unit_orders(who.unit_id)
    return {"unit_id": who.unit_id, "tasks": [task_view(o, ctx.calendar) for o in orders]}


@router.get("/tasks/{task_id}", summary="One of my tasks, with its history and the reports behind it")
async def my_task(task_id: str, ctx: Ctx, who: Who) -> dict:
    """``reports``: each source of the incident with what it said (its words, channel, address and time; a photo for
    one posted through Open311; never who sent it), an alarm with its sensor's reading."""
    order = await _mine(ctx, who, task_id)
    return {**task_view(order, ctx.calendar, history=True), "reports": await _reports(ctx, order.incident_id)}


async def _reports(ctx: ApiContext, incident_id: str) -> list[dict]:
    sources = await ctx.incidents.source_ids(incident_id, limit=50)
    report_ids = [source.removeprefix("report:") for source in sources if source.startswith("report:")]
    saved = dict(zip(report_ids, await ctx.store.requests(report_ids), strict=True))
    said = await ctx.incidents.said(incident_id)  # what the worker kept of every channel's reports and alarms
    reports = []
    for source in sources:
        entry: dict = {"source": source, "kind": "report" if source.startswith("report:") else "sensor"}
        words = said.get(source)
        if words is not None:
            entry |= {"description": words.get("text"), "channel": words.get("channel"),
                      "address": words.get("address"), "requested_at": words.get("at")}  # fmt: skip
            if words.get("sensor"):
                entry["sensor"] = words["sensor"]
        request = saved.get(source.removeprefix("report:")) if entry["kind"] == "report" else None
        if request is not None:
            entry |= {"description": request.get("description"), "service_name": request.get("service_name"),
                      "media_url": request.get("media_url"), "address": request.get("address"),
                      "requested_at": request.get("requested_datetime")}  # fmt: skip
        reports.append(entry)
    return reports


async def _act(
    ctx: ApiContext, request: Request, who: Caller, task_id: str, kind: str, **fields: object
) -> JSONResponse:
    order = await _mine(ctx, who, task_id)
    record = lifecycle_record(ctx, request, kind, order, who.unit_actor, by=who.holder, **fields)
    return await submit(ctx, order, record)


ACTION_RESPONSES = {
    200: {"description": "Applied by the worker; the task as it is now."},
    202: {"description": "Accepted; the worker has not applied it yet (look again)."},
    404: {"description": "No such task for this unit."},
    409: {"description": "Not allowed in the task's state (the table's reason)."},
}


@router.post("/tasks/{task_id}/ack", summary="Acknowledge (sign for) a task", responses=ACTION_RESPONSES)
async def acknowledge(task_id: str, request: Request, ctx: Ctx, who: Who, body: NoteBody | None = None):
    return await _act(ctx, request, who, task_id, "ack", note=body.note if body else None)


@router.post("/tasks/{task_id}/start", summary="Start work on it", responses=ACTION_RESPONSES)
async def start(task_id: str, request: Request, ctx: Ctx, who: Who, body: NoteBody | None = None):
    return await _act(ctx, request, who, task_id, "start", note=body.note if body else None)


@router.post("/tasks/{task_id}/wait", summary="Wait on the reporter (pauses the resolve clock)",
             responses=ACTION_RESPONSES)  # fmt: skip
async def wait(task_id: str, body: WaitBody, request: Request, ctx: Ctx, who: Who):
    return await _act(ctx, request, who, task_id, "wait", reason=body.reason)


@router.post("/tasks/{task_id}/resume", summary="Resume after waiting", responses=ACTION_RESPONSES)
async def resume(task_id: str, request: Request, ctx: Ctx, who: Who, body: NoteBody | None = None):
    return await _act(ctx, request, who, task_id, "resume", note=body.note if body else None)


@router.post("/tasks/{task_id}/reject", summary="Return a task that is not ours, with a reason",
             responses=ACTION_RESPONSES)  # fmt: skip
async def reject(task_id: str, body: RejectBody, request: Request, ctx: Ctx, who: Who):
    if body.reason_code == "other" and not body.reason:
        raise ApiError(400, "invalid_request", "reason is required when reason_code is 'other'")
    return await _act(ctx, request, who, task_id, "reject", reason_code=body.reason_code, reason=body.reason)


@router.post("/tasks/{task_id}/resolve", summary="Report the work done", responses=ACTION_RESPONSES)
async def resolve(task_id: str, body: ResolveBody, request: Request, ctx: Ctx, who: Who):
    return await _act(ctx, request, who, task_id, "resolve", note=body.note, media_url=body.media_url)


@router.get(
    "/events",
    summary="Push channel (server-sent events): new assignments and withdrawals",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    ctx: Ctx,
    who: Who,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,20}-\d{1,20}$")] = None,
    max_events: Annotated[int | None, Query(ge=1, le=10_000, description="Close after this many events.")] = None,
) -> StreamingResponse:
    """``assignment`` events carry the task; ``withdrawn`` ones the task id that is no longer the unit's.

    Reconnect with ``Last-Event-ID`` to receive what was missed (the channel keeps the last 1,000).
    """
    start = last_event_id or await ctx.orders.inbox_tail(who.unit_id)

    return event_stream(request, lambda last: ctx.orders.inbox(who.unit_id, last, block_ms=5000), start, max_events)
