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


def has_room(unit: Unit, loads: Mapping[str, int]) -> bool:
    return unit.capacity is None or loads.get(unit.id, 0) < unit.capacity


@dataclass(frozen=True)
class Overflow:
    """Where an incident goes once capacity is taken into account."""

    unit_id: str
    full: tuple[dict[str, Any], ...]  # units found at capacity on the way, with load and capacity
    all_full: bool  # every unit on the backup chain is full: the responsible unit keeps it

    def text(self) -> str:
        chain = ", ".join(f"{f['unit']} ({f['load']}/{f['capacity']})" for f in self.full)
        if self.all_full:
            return f"{chain} at capacity with every backup; kept by {self.unit_id}, over capacity"
        return f"{chain} at capacity; overflowed to backup {self.unit_id}"


def overflow(pack: CityPack, unit_id: str, loads: Mapping[str, int]) -> Overflow:
    """Follow ``unit_id``'s backup chain to the first unit with spare capacity."""
    full: list[dict[str, Any]] = []
    seen: set[str] = set()
    current = pack.unit(unit_id)
    while current is not None and not has_room(current, loads):
        full.append({"unit": current.id, "load": loads.get(current.id, 0), "capacity": current.capacity})
        seen.add(current.id)
        if current.backup is None or current.backup in seen:
            return Overflow(unit_id, tuple(full), True)
        current = pack.unit(current.backup)
    return Overflow(current.id if current is not None else unit_id, tuple(full), False)


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
    chosen: str | None = None
    chosen_distance: float | None = None
    ranked: list[dict[str, Any]] = []
    for i in np.argsort(distances, kind="stable"):
        team = placed[int(i)]
        metres = round(float(distances[i]), 1)
        if chosen is None and has_room(team, loads):
            chosen, chosen_distance = team.id, metres
            ranked.append({"unit": team.id, "distance_m": metres, "why": "nearest with spare capacity"})
        elif chosen is None:
            ranked.append(
                {"unit": team.id, "distance_m": metres, "why": f"at capacity ({loads.get(team.id, 0)}/{team.capacity})"}
            )
        else:
            ranked.append({"unit": team.id, "distance_m": metres, "why": f"further than {chosen}"})
    return TeamChoice(chosen, chosen_distance, tuple((ranked + considered)[:shown]))
