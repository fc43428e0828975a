"""Load-aware choices, pure: overflow to backup units, and the nearest field team with spare capacity.

The current loads (open tasks per unit) and the field teams' positions come in as
plain mappings; :mod:`dispatch.store` reads them from Redis. Capacity is a soft
limit: two workers reading the same loads may both give a unit its last slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dispatch.citypack import CityPack, Unit
from dispatch.geometry import ground_distance_m

Position = tuple[float, float]  # (lat, lon)


@dataclass(frozen=True)
class Overflow:
    """Where an incident goes once capacity is taken into account."""

    unit_id: str
    full: tuple[tuple[str, int, int], ...]  # (unit, load, capacity) of the first units found full, at most 3
    full_count: int  # how many units on the backup chain were full
    all_full: bool  # every unit on the backup chain is full: the responsible unit keeps it

    @property
    def responsible(self) -> str:
        return self.full[0][0] if self.full else self.unit_id

    def text(self) -> str:
        chain = ", ".join(f"{unit} ({load}/{capacity})" for unit, load, capacity in self.full)
        if self.full_count > len(self.full):
            chain += f" and {self.full_count - len(self.full)} more"
        if self.all_full:
            return f"{chain} at capacity with every backup; kept by {self.unit_id}, over capacity"
        return f"{chain} at capacity; overflowed to backup {self.unit_id}"


class Capacity:
    """Open tasks per unit during one batch, and the backup chains to walk when a unit is full."""

    def __init__(self, pack: CityPack, loads: Mapping[str, int]) -> None:
        self.live = dict(loads)
        self._capacity = {u.id: u.capacity for u in pack.spec.units}
        self._backup = {u.id: u.backup for u in pack.spec.units}
        self._walks: dict[str, Overflow] = {}

    def room(self, unit_id: str) -> bool:
        capacity = self._capacity.get(unit_id)
        return capacity is None or self.live.get(unit_id, 0) < capacity

    def overflow(self, unit_id: str) -> Overflow:
        """Follow ``unit_id``'s backup chain to the first unit with spare capacity.

        Loads only grow during a batch, so a chain found full stays full and a found
        backup stays the answer until it fills: the walk is remembered per unit.
        """
        if self.room(unit_id):
            return Overflow(unit_id, (), 0, False)
        known = self._walks.get(unit_id)
        if known is not None and (known.all_full or self.room(known.unit_id)):
            full = tuple((unit, self.live.get(unit, 0), limit) for unit, _, limit in known.full)
            return Overflow(known.unit_id, full, known.full_count, known.all_full)
        walked = self._walk(unit_id)
        self._walks[unit_id] = walked
        return walked

    def _walk(self, unit_id: str) -> Overflow:
        full: list[tuple[str, int, int]] = []
        count = 0
        seen: set[str] = set()
        current: str | None = unit_id
        while current is not None and current not in seen and not self.room(current):
            if len(full) < 3:
                full.append((current, self.live.get(current, 0), self._capacity[current]))  # type: ignore[arg-type]
            count += 1
            seen.add(current)
            current = self._backup.get(current)
        if current is None or current in seen:
            return Overflow(unit_id, tuple(full), count, True)
        return Overflow(current, tuple(full), count, False)

    def take(self, unit_id: str) -> int:
        """Count one more task for ``unit_id``; returns its load before."""
        load = self.live.get(unit_id, 0)
        self.live[unit_id] = load + 1
        return load

    def capacity_of(self, unit_id: str) -> int | None:
        return self._capacity.get(unit_id)


@dataclass(frozen=True)
class TeamChoice:
    unit_id: str | None  # None: no team has both a known position and spare capacity
    distance_m: float | None
    considered: tuple[dict[str, Any], ...]  # nearest first, at most a handful


def nearest_team(
    teams: list[Unit],
    lat: float,
    lon: float,
    positions: Mapping[str, Position],
    loads: Mapping[str, int],
    shown: int = 5,
) -> TeamChoice:
    """The nearest team (by ground distance from its last known position) that has spare capacity."""
    placed = [t for t in teams if t.id in positions]
    considered: list[dict[str, Any]] = [
        {"unit": t.id, "distance_m": None, "why": "no known position"} for t in teams if t.id not in positions
    ]
    if not placed:
        return TeamChoice(None, None, tuple(considered[:shown]))
    team_lat = np.array([positions[t.id][0] for t in placed])
    team_lon = np.array([positions[t.id][1] for t in placed])
    distances = ground_distance_m(lat, lon, team_lat, team_lon)
    limits = np.array([np.inf if t.capacity is None else t.capacity for t in placed])
    open_tasks = np.array([loads.get(t.id, 0) for t in placed])
    order = np.argsort(distances, kind="stable")
    spare = np.flatnonzero(open_tasks[order] < limits[order])
    chosen_at = int(spare[0]) if len(spare) else -1
    ranked: list[dict[str, Any]] = []
    for position, i in enumerate(order[: max(shown, chosen_at + 1)].tolist()):
        team = placed[i]
        metres = round(float(distances[i]), 1)
        if position == chosen_at:
            why = "nearest with spare capacity"
        elif chosen_at < 0 or position < chosen_at:
            why = f"at capacity ({int(open_tasks[i])}/{team.capacity})"
        else:
            why = f"further than {placed[int(order[chosen_at])].id}"
        ranked.append({"unit": team.id, "distance_m": metres, "why": why})
    shown_entries = ranked[:shown] if chosen_at < shown else [*ranked[: shown - 1], ranked[chosen_at]]
    if chosen_at < 0:
        return TeamChoice(None, None, tuple((shown_entries + considered)[:shown]))
    chosen = placed[int(order[chosen_at])]
    distance = round(float(distances[order[chosen_at]]), 1)
    return TeamChoice(chosen.id, distance, tuple((shown_entries + considered)[:shown]))
