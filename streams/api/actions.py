"""Turning an API call into a lifecycle event, submitting it, and answering with the outcome."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from feedback import FeedbackError, WorkOrder
from feedback.views import task_view
from streams.api.context import ApiContext
from streams.api.errors import ApiError, request_id
from streams.logs import bound
from streams.outcomes import event

#: how each refusal code answers over HTTP; a unit never learns that another unit's order exists
STATUS_OF = {"illegal_transition": 409, "stale_event": 409, "invalid_event": 400, "not_assigned": 404,
             "unknown_order": 404}  # fmt: skip


def refusal(exc: FeedbackError) -> ApiError:
    status = STATUS_OF.get(exc.code, 409)
    message = exc.reason if status != 404 else "no such task for this unit"
    return ApiError(status, exc.code, message)


def lifecycle_record(
    ctx: ApiContext, request: Request, kind: str, order: WorkOrder, actor: str, **fields: Any
) -> dict[str, Any]:
    """The event for one action. ``Idempotency-Key`` makes a retried call the same event (applied once)."""
    key = request.headers.get("idempotency-key", "")[:128] or uuid.uuid4().hex
    task_id = fields.pop("task_id", order.task_id)
    unit_id = fields.pop("unit_id", order.unit_id)
    return event(kind, order.incident_id, actor, ctx.clock(), task_id=task_id, unit_id=unit_id,
                 key=f"api:{key}", request_id=request_id(request), **{k: v for k, v in fields.items()
                                                                      if v is not None})  # fmt: skip


async def submitted(ctx: ApiContext, order: WorkOrder | None, record: dict[str, Any]) -> str:
    """Write the event through the lifecycle table: "applied" or "accepted"; a refusal is raised as its API error."""
    try:
        with bound(incident_id=record.get("incident_id"), task_id=record.get("task_id"),
                   unit_id=record.get("unit_id"), event_id=record.get("event_id")):  # fmt: skip
            status, code, reason = await ctx.submit(order, record)
    except FeedbackError as exc:
        raise refusal(exc) from None
    if status == "refused":
        raise ApiError(STATUS_OF.get(code or "", 409), code or "refused", reason or "refused")
    return status


async def submit(ctx: ApiContext, order: WorkOrder | None, record: dict[str, Any]) -> JSONResponse:
    """200 with the order once the worker applied the event, 202 if it has not yet, 4xx if refused."""
    status = await submitted(ctx, order, record)
    body: dict[str, Any] = {"status": status, "event_id": record["event_id"], "type": record["type"]}
    if status == "applied":
        after = await ctx.order(record["incident_id"])
        body["task"] = None if after is None else task_view(after, ctx.calendar)
        return JSONResponse(body, status_code=200)
    return JSONResponse(body, status_code=202)
