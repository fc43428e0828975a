"""Status from the units' own systems: ``POST /connectors/{unit_id}/events``, signed, becomes a lifecycle event.

The body is one action on one of the unit's tasks, ``{"type": "ack" | "start" | "wait" | "resume" | "reject" |
"resolve", "task_id", ...}`` with the fields the units API takes for that action; the request carries
``X-CityLoop-Signature`` (HMAC-SHA256 with the connector's secret over ``<t>.<body>``, ``t`` within
``CITYLOOP_CONNECTOR_TOLERANCE_S`` of the API's clock) and an ``Idempotency-Key``. The event is the one the units
API would write (actor ``unit:<unit_id>``, ``by`` ``connector:<unit_id>``: streams/connectors/status.py, which
the open311 poller uses too), checked against the lifecycle table
before it is written, and its id comes from the key: a retried callback is the same event, applied once. A
signature seen before with another key is refused (a replay under a fresh key).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feedback import REJECT_REASONS
from streams import metrics
from streams.api.actions import submit
from streams.api.auth import context
from streams.api.context import ApiContext
from streams.api.errors import ApiError, request_id
from streams.connectors.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SignatureError, digest, verify
from streams.connectors.status import connector_event
from streams.ids import incident_of_task

router = APIRouter(prefix="/connectors", tags=["connectors"])

RejectCode = Literal[tuple(sorted(REJECT_REASONS))]  # type: ignore[valid-type]
URL_PATTERN = r"^https?://[^\s]{1,2040}$"
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces


class Callback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ack", "start", "wait", "resume", "reject", "resolve"]
    task_id: str = Field(max_length=128)
    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=2000)
    reason_code: RejectCode | None = None  # type: ignore[valid-type]
    media_url: str | None = Field(None, max_length=2048, pattern=URL_PATTERN)

    def fields(self) -> dict[str, str | None]:
        """The event's own fields for this action; :class:`ApiError` 400 when one it needs is missing."""
        if self.type == "wait" and not self.reason:
            raise ApiError(400, "invalid_request", "a wait needs a reason")
        if self.type == "reject":
            if self.reason_code is None:
                raise ApiError(400, "invalid_request", "a reject needs a reason_code")
            if self.reason_code == "other" and not self.reason:
                raise ApiError(400, "invalid_request", "reason is required when reason_code is 'other'")
            return {"reason_code": self.reason_code, "reason": self.reason}
        if self.type == "resolve":
            if not self.note:
                raise ApiError(400, "invalid_request", "a resolve needs a note")
            return {"note": self.note, "media_url": self.media_url}
        if self.type == "wait":
            return {"reason": self.reason}
        return {"note": self.note}


Ctx = Annotated[ApiContext, Depends(context)]


def _count(unit_id: str, outcome: str) -> None:
    metrics.CONNECTOR_CALLBACKS.labels(unit_id, outcome).inc()


@router.post(
    "/{unit_id}/events",
    summary="A status callback from a unit's own system (signed)",
    responses={
        200: {"description": "Applied by the worker; the task as it is now."},
        202: {"description": "Accepted; the worker has not applied it yet."},
        401: {"description": "Signature missing, wrong, or too old."},
        404: {"description": "No connector for this unit, or no such task for it."},
        409: {"description": "Not allowed in the task's state, or a replayed signature under another key."},
    },
)
async def callback(unit_id: str, request: Request, ctx: Ctx) -> JSONResponse:
    unit = ctx.pack.unit(unit_id)
    if unit is None or unit.connector is None or unit.connector.type != "webhook":  # an open311 system is polled
        raise ApiError(404, "not_found", f"no connector for unit {unit_id}")
    secret = os.environ.get(unit.connector.secret_env, "")
    if not secret.strip():
        _count(unit_id, "unconfigured")
        raise ApiError(503, "connector_unavailable", f"the API has no secret for {unit_id}'s connector "
                       f"(${unit.connector.secret_env} is not set)")  # fmt: skip
    body = await request.body()
    header = request.headers.get(SIGNATURE_HEADER)
    now = ctx.clock().timestamp()
    try:
        signed_at = verify(secret.encode("utf-8"), header, body, now, ctx.settings.connector_tolerance_s)
    except SignatureError as exc:
        _count(unit_id, f"signature_{exc.code}")
        raise ApiError(401, f"signature_{exc.code}", exc.reason) from None
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not _KEY.match(key):
        _count(unit_id, "invalid")
        raise ApiError(400, "invalid_request", f"{IDEMPOTENCY_HEADER} is required: 1-128 printable characters, "
                       "the same on every retry of one action")  # fmt: skip
    signature = digest(secret.encode("utf-8"), signed_at, body)  # one per (time, body), whatever v1s were sent
    earlier = await ctx.store.claim_signature(unit_id, signature, key, 2 * ctx.settings.connector_tolerance_s)
    if earlier is not None and earlier != key:
        _count(unit_id, "replayed")
        raise ApiError(409, "replayed", "this signed request was received before under another Idempotency-Key")
    try:
        action = Callback.model_validate_json(body)
    except ValidationError as exc:
        _count(unit_id, "invalid")
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, "invalid_request", f"{where}: {first['msg']}") from None
    fields = action.fields()
    incident = incident_of_task(action.task_id)
    order = None if incident is None else await ctx.order(incident)
    if order is None or order.unit_id != unit_id or order.task_id != action.task_id:
        _count(unit_id, "not_found")
        raise ApiError(404, "not_found", f"no task {action.task_id} for unit {unit_id}")
    record = connector_event(unit_id, order, action.type, key, ctx.clock(), fields, request_id=request_id(request))
    try:
        response = await submit(ctx, order, record)
    except ApiError as exc:
        _count(unit_id, "refused")
        raise exc from None
    _count(unit_id, "applied" if response.status_code == 200 else "accepted")
    return response
