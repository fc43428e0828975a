"""Re-categorisation: when an incident's category changes, route it again and say whom to tell.

A wrong category is the commonest cause of misrouting, and fixing the category
must move the work: the new responsible unit gets the task and the old one is
told to drop it. Pure: the caller applies the move (e.g. ``UnitStore.move_task``)
and sends the notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dispatch.assign import Assignment, Dispatcher
from dispatch.capacity import Position


@dataclass(frozen=True)
class Reroute:
    """The new assignment after a category change, and the units to tell."""

    assignment: Assignment
    previous_unit: str
    notify: tuple[str, ...]  # the previous unit (to withdraw) and the new one (to take over); one if unchanged

    @property
    def moved(self) -> bool:
        return self.assignment.unit_id != self.previous_unit

    @property
    def why(self) -> str:
        """One sentence: the category change, and who takes over (or stays)."""
        return str(self.assignment.explanation["recategorised"]["why"])


def reroute(
    dispatcher: Dispatcher,
    *,
    old_category: str,
    old_unit: str,
    new_category: str,
    lat: float,
    lon: float,
    confidence: float | None = None,
    source: str | None = None,
    now: datetime | None = None,
    loads: Mapping[str, int] | None = None,
    positions: Mapping[str, Position] | None = None,
) -> Reroute:
    """Assign the incident again under ``new_category``.

    ``loads`` are the open tasks per unit *including* this incident's task at
    ``old_unit``; that task leaves it, so it does not count against the old unit
    when the new category happens to lead back there.
    """
    adjusted = None
    if loads is not None:
        adjusted = dict(loads)
        if adjusted.get(old_unit, 0) > 0:
            adjusted[old_unit] -= 1
    assignment = dispatcher.assign(
        new_category, lat, lon, confidence, source=source, now=now, loads=adjusted, positions=positions
    )
    explanation = dict(assignment.explanation)
    moved = assignment.unit_id != old_unit
    explanation["recategorised"] = {
        "from": old_category,
        "to": new_category,
        "previous_unit": old_unit,
        "why": (
            f"category changed from {old_category} to {new_category}; "
            + (f"{assignment.unit_id} takes over from {old_unit}" if moved else f"{old_unit} stays responsible")
        ),
    }
    co_notify = tuple(u for u in assignment.co_notify if u != old_unit)
    rerouted = Assignment(assignment.unit_id, assignment.rule, explanation, co_notify)
    notify = (old_unit, assignment.unit_id) if moved else (old_unit,)
    return Reroute(rerouted, old_unit, notify)
