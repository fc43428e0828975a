"""Routing rules compiled to arrays, so a batch is matched with a few numpy operations per rule.

A rule matches an incident when all of its conditions hold: category (or its
group), area (the point lies in one of the listed features), source (the
channel the report came in on) and time of day (local time in the city's time
zone at ``now``, which the caller passes in). A missing condition always holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from dispatch.citypack import CityPack, Rule, TimeWindow

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Bits of a rule's per-incident state, kept for the explanation.
CATEGORY_OK, AREA_OK, SOURCE_OK, TIME_OK = 1, 2, 4, 8
ALL_OK = CATEGORY_OK | AREA_OK | SOURCE_OK | TIME_OK


def in_window(window: TimeWindow, local: datetime) -> bool:
    """Whether local time ``local`` falls in ``window`` (start inclusive, end exclusive)."""
    clock = local.time().replace(tzinfo=None)
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    days: set[str] = set(window.days) or set(WEEKDAYS)
    if window.start < window.end:
        return window.start <= clock < window.end and today in days
    # wraps past midnight: the evening part belongs to today, the small hours to the day before
    return (clock >= window.start and today in days) or (clock < window.end and yesterday in days)


def window_text(window: TimeWindow) -> str:
    days = f" on {','.join(window.days)}" if window.days else ""
    return f"{window.start:%H:%M}-{window.end:%H:%M}{days}"


@dataclass(frozen=True)
class CompiledRule:
    """One rule, ready to match a batch."""

    position: int  # in the order rules are tried
    rule: Rule
    categories: np.ndarray  # bool per category index of the pack
    layer: str | None
    features: np.ndarray | None  # bool per feature of ``layer``, plus a final False for "outside the layer"
    sources: frozenset[str]  # lower case; empty: any source
    area_id: int | None  # handle in Boundaries, for the distance to the rule area's edge

    @property
    def id(self) -> str:
        return self.rule.id

    def state(
        self,
        category_idx: np.ndarray,
        located: dict[str, np.ndarray],
        source_ok: np.ndarray,
        time_ok: bool,
    ) -> np.ndarray:
        """Per incident, which conditions hold (bits CATEGORY_OK | AREA_OK | SOURCE_OK | TIME_OK)."""
        state = np.where(self.categories[category_idx], CATEGORY_OK, 0).astype(np.uint8)
        if self.layer is None:
            state |= AREA_OK
        else:
            assert self.features is not None
            state |= np.where(self.features[located[self.layer]], AREA_OK, 0).astype(np.uint8)
        state |= np.where(source_ok, SOURCE_OK, 0).astype(np.uint8)
        if time_ok:
            state |= TIME_OK
        return state


def compile_rules(
    pack: CityPack, category_index: dict[str, int], area_id: Callable[[str, list[str] | str], int]
) -> list[CompiledRule]:
    """The pack's rules in the order they are tried (priority high to low, then as declared)."""
    codes = list(category_index)
    compiled = []
    for position, (_, rule) in enumerate(pack.ordered_rules):
        match = rule.match
        if match.categories or match.groups:
            wanted = set(match.categories)
            groups = set(match.groups)
            categories = np.fromiter(
                (code in wanted or pack.category(code).group in groups for code in codes),  # type: ignore[union-attr]
                dtype=np.bool_,
                count=len(codes),
            )
        else:
            categories = np.ones(len(codes), dtype=bool)
        layer = features = area = None
        if match.area is not None:
            layer = match.area.layer
            ids = pack.layers[layer].feature_ids
            chosen = set(ids) if match.area.features == "*" else set(match.area.features)
            features = np.array([f in chosen for f in ids] + [False], dtype=bool)
            area = area_id(layer, match.area.features)
        sources = frozenset(s.lower() for s in match.sources)
        compiled.append(CompiledRule(position, rule, categories, layer, features, sources, area))
    return compiled


def time_matches(rules: list[CompiledRule], local: datetime | None) -> list[bool]:
    """Per rule, whether its time window holds at ``local`` (no window: always; no time given: never)."""
    result = []
    for rule in rules:
        window = rule.rule.match.hours
        result.append(True if window is None else (local is not None and in_window(window, local)))
    return result


def failed_conditions(rule: CompiledRule, state: int, local: datetime | None) -> str:
    """Why a rule did not match, in words."""
    match = rule.rule.match
    reasons = []
    if not state & AREA_OK and match.area is not None:
        where = "every feature" if match.area.features == "*" else ", ".join(match.area.features[:8])
        reasons.append(f"point outside its area ({match.area.layer}: {where})")
    if not state & SOURCE_OK:
        reasons.append(f"source not one of {sorted(rule.sources)}")
    if not state & TIME_OK and match.hours is not None:
        when = "no time given" if local is None else f"local time {local:%a %H:%M}"
        reasons.append(f"{when} outside {window_text(match.hours)}")
    return "; ".join(reasons) or "does not match"
