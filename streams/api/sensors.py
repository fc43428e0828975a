"""The ops centre's sensors view: each sensor's newest reading and the open incidents its alarms are part of.

``GET /ops/sensors`` reads what the worker keeps with each sensor's detector state (streams/state.py,
``DetectorStore``: the newest reading applied, written with the state, once per sensor per batch) and the open
orders (the read ``/ops/board`` makes). A sensor's open alarms are the open orders its alarm opened (origin
``sensor``) or joined (the order's ``alarms``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from streams.api.auth import Caller, context, ops_caller
from streams.api.context import ApiContext
from streams.ids import iso, iso_ts

router = APIRouter(prefix="/ops", tags=["ops centre"])

Ctx = Annotated[ApiContext, Depends(context)]
Ops = Annotated[Caller, Depends(ops_caller)]


@router.get("/sensors", summary="Sensors: each one's newest reading and its open alarm incidents, alarms first")
async def sensors(ctx: Ctx, who: Ops, limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000) -> dict[str, Any]:
    heard = await ctx.sensors.heard(limit)
    alarms: dict[str, list[str]] = {}
    for order in await ctx.orders.open_orders(20_000):
        ids = set(order.alarms) | ({order.sensor_id} if order.origin == "sensor" and order.sensor_id else set())
        for sensor_id in ids:
            alarms.setdefault(sensor_id, []).append(order.incident_id)
    kinds = ctx.pack.spec.sensor_kinds
    listed = []
    for sensor in heard:
        spec = kinds.get(sensor["kind"])
        listed.append({**sensor, "observed_at": iso_ts(sensor["observed_at"]),
                       "alarm_since": None if sensor["alarm_since"] is None else iso_ts(sensor["alarm_since"]),
                       "category": spec.category if spec else None,
                       "open_alarms": sorted(alarms.get(sensor["sensor_id"], []))})  # fmt: skip
    listed.sort(key=lambda s: (not s["open_alarms"], not s["alarm"], s["sensor_id"]))
    return {"at": iso(ctx.clock()), "sensors": listed}
