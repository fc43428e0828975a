"""What a city pack says about time and the closed loop, read in one place for the worker and the API.

The pack (``dispatch``) names working hours, holidays and each category's SLA
targets; the closed loop (``feedback``) computes with a
:class:`~feedback.BusinessCalendar` and a :class:`~feedback.Policy`. This
module turns the one into the other, so the worker's first task, its later
tasks and the API's views all count deadlines from the same reading.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from dispatch import CityPack
from feedback import BusinessCalendar, Policy, SlaSpec


def calendar_of(pack: CityPack) -> BusinessCalendar:
    """The pack's business calendar: its zone, working hours, holidays and where a deadline at closing time goes."""
    spec = pack.spec.calendar
    return BusinessCalendar(
        zone=pack.zone,
        start=spec.working_hours.start,
        end=spec.working_hours.end,
        days=frozenset(spec.working_hours.days),
        holidays=frozenset(date.fromisoformat(day) for day in spec.holidays),
        at_close=spec.at_close,
    )


def policy_for(pack: CityPack, settings: Any, calendar: BusinessCalendar | None = None) -> Policy:
    """The closed loop's policy for a pack under the deployment's settings (rejections, sensor quiet time)."""
    slas = {
        c.code: SlaSpec(c.sla.acknowledge, c.sla.resolve, c.sla.verify, c.sla.clock)
        for c in pack.spec.categories
        if c.sla is not None
    }
    return Policy(
        calendar=calendar if calendar is not None else calendar_of(pack),
        slas=slas,
        fallback_unit=pack.spec.fallback_unit,
        max_rejections=settings.max_rejections,
        sensor_quiet=timedelta(seconds=settings.sensor_quiet_s),
        sensor_reopen=timedelta(seconds=settings.sensor_reopen_s),
    )


def supervisor_of(pack: CityPack, unit_id: str, stage: str) -> str:
    """Who an overdue order escalates to: the unit's department, else the ops centre (verification: the ops centre)."""
    unit = pack.unit(unit_id)
    if stage == "verify" or unit is None or not unit.department:
        return pack.spec.fallback_unit
    return unit.department


def sla_owner(pack: CityPack, unit_id: str | None) -> tuple[str, str]:
    """The (department, unit) an SLA outcome is counted for: a field team's department, else the unit itself.

    A unit the pack does not know (an order dispatched under an earlier pack) is ``("other", "other")``, so the
    labels stay within the pack's units.
    """
    unit = pack.unit(unit_id) if unit_id else None
    if unit is None:
        return "other", "other"
    return unit.department or unit.id, unit.id
