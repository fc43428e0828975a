"""A city pack's SLA conventions reach the tasks the worker sends and its SLA timer: where a deadline at closing time
goes, and a category without SLA (report-only) that gets no deadlines and never breaches."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatch import CityPack, load_city_pack
from streams.ids import iso, report_incident, task_id_for
from tests.unit.pipeline.conftest import Loop, Words, report


def edited_pack(pack: CityPack, target: Path, change: Callable[[dict[str, Any]], None]) -> CityPack:
    """A copy of the demo city with ``change`` applied to its city.yaml."""
    shutil.copytree(pack.path, target)
    path = target / "city.yaml"
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))
    return load_city_pack(target)


def pothole(document: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in document["categories"] if c["code"] == "pothole")


@pytest.mark.parametrize(
    ("at_close", "acknowledge_by"),
    [(None, "2026-11-30T17:00:00Z"), ("closing", "2026-11-30T17:00:00Z"), ("next_opening", "2026-12-01T07:00:00Z")],
)
def test_a_task_deadline_at_closing_time_follows_the_packs_calendar(pack, tmp_path, at_close, acknowledge_by):
    """Monday 11:00 in Lindenhaven (08:00-18:00) plus 7 working hours is 18:00 exactly: it stays there by default
    and with ``closing``; ``next_opening`` moves it to Tuesday 08:00. Resolve (1 working day) is not at closing."""

    def change(document: dict[str, Any]) -> None:
        pothole(document)["sla"] = {"acknowledge": "7h", "resolve": "1d", "clock": "working"}
        if at_close is not None:
            document["calendar"]["at_close"] = at_close

    loop = Loop(edited_pack(pack, tmp_path / "pack", change), Words({"hole": ("pothole", 0.97)}))
    asyncio.run(loop.reports(report(1)))
    [task] = loop.sink.on("tasks")
    assert task["sla"]["acknowledge_by"] == acknowledge_by
    assert task["sla"]["resolve_by"] == "2026-12-01T10:00:00Z"


def test_a_category_without_sla_gets_a_task_without_deadlines_and_never_breaches(pack, tmp_path):
    """Report-only potholes: the task has no clock and no deadlines, the order no timers, and a month later the
    timer has fired nothing for it; the unit can still acknowledge it."""
    loop = Loop(
        edited_pack(pack, tmp_path / "pack", lambda d: pothole(d).pop("sla")), Words({"hole": ("pothole", 0.97)})
    )
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        await loop.loop_back()  # the dispatched event makes the order
        timer = loop.parts.timer
        fired = []
        for days in (1, 3, 30):
            loop.clock.advance(days=days)
            fired.append(await timer.fire_due())
        later = int((loop.clock() + timedelta(days=365)).timestamp() * 1000)
        left = await timer.orders.pop_due(later, 100, 1000)
        ack = {"schema": 1, "event_id": "evt-ack", "type": "ack", "incident_id": incident,
               "task_id": task_id_for(incident), "unit_id": "roads-west", "actor": "unit:roads-west",
               "at": iso(loop.clock())}  # fmt: skip
        await loop.feedback(ack)
        return fired, left, await loop.parts.lifecycle.orders.load([incident])

    fired, left, orders = asyncio.run(scenario())
    [task] = loop.sink.on("tasks")
    assert task["sla"] == {"clock": None, "acknowledge_by": None, "resolve_by": None, "verify_within": None}
    order = orders[incident]
    assert order.state.value == "acknowledged" and order.sla is None and dict(order.clocks) == {}
    assert fired == [0, 0, 0] and left == [] and order.light() == "green"
    assert loop.sink.on("feedback", "sla_warning") == [] and loop.sink.on("feedback", "escalate") == []
