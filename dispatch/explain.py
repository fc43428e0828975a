"""Explanations: why an incident went to a unit, in words a person can check.

Every assignment's explanation names the pack and its version, the category, the
rule that decided, the feature hit in each layer, every unit that handles the
category and why it was chosen, lost or skipped, the rules tried before the one
that decided, the distance to the edge of the deciding area, co-notified units,
capacity, and the classifier's confidence. The parts that depend only on where a
point fell are cached: a batch of 50,000 points in 2,000 polygons builds each
part once per polygon, not once per point. Explanations share those cached lists
and dicts, so treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.coverage import Coverage, Handler
from dispatch.rules import ALL_OK, CATEGORY_OK, CompiledRule, failed_conditions, window_text

# How an incident was decided.
BY_RULE, BY_TEAM, BY_AREA, AMBIGUOUS, FALLBACK = "rule", "team", "area", "ambiguous", "fallback"

_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class Decision:
    """What the dispatcher decided for one incident before capacity and notifications."""

    kind: str
    unit_id: str  # before any overflow to a backup (for a nearest-team rule: the team chosen)
    rule_id: str
    handler_rank: int  # the covering handler (BY_AREA), or the first of several (AMBIGUOUS), else -1
    rule: CompiledRule | None = None


class Explainer:
    """Builds explanation dicts, caching the parts that repeat."""

    def __init__(self, fallback_unit: str) -> None:
        self.fallback_unit = fallback_unit
        self._features: dict[Any, dict[str, str | None]] = {}
        self._candidates: dict[Any, list[dict[str, str]]] = {}
        self._skipped_entries: dict[Any, dict[str, str]] = {}

    def cached_features(self, key: Any) -> dict[str, str | None] | None:
        return self._features.get(key)

    def features(self, key: Any, hit: dict[str, str | None]) -> dict[str, str | None]:
        if len(self._features) > _CACHE_LIMIT:
            self._features.clear()
        self._features[key] = hit
        return hit

    def cached_candidates(self, key: Any) -> list[dict[str, str]] | None:
        return self._candidates.get(key)

    def candidates(
        self, key: Any, coverage: Coverage, decision: Decision, located: dict[str, int]
    ) -> list[dict[str, str]]:
        """The candidate list for a decision; ``key`` stands for (category, decision, covering handlers)."""
        if len(self._candidates) > _CACHE_LIMIT:
            self._candidates.clear()
        built = self._build_candidates(coverage, decision, coverage.covering(located))
        self._candidates[key] = built
        return built

    def _skipped(self, handler: Handler) -> dict[str, str]:
        """The entry of a handler that does not cover the point; the same for every point, so shared."""
        key = (handler.unit.id, handler.area_id)
        entry = self._skipped_entries.get(key)
        if entry is None:
            why = (
                "unit has no service area"
                if handler.layer is None
                else f"{handler.area_text()} does not contain the point"
            )
            entry = self._skipped_entries[key] = {"unit": handler.unit.id, "outcome": "skipped", "why": why}
        return entry

    def _build_candidates(
        self, coverage: Coverage, decision: Decision, covering: tuple[int, ...]
    ) -> list[dict[str, str]]:
        code = coverage.code
        result = []
        for handler in coverage.handlers:
            unit = handler.unit
            if decision.kind == BY_AREA and handler.rank == decision.handler_rank:
                outcome, why = "chosen", f"handles {code}; {handler.area_text()} contains the point"
            elif decision.kind in (BY_RULE, BY_TEAM) and unit.id == decision.unit_id:
                outcome, why = "chosen", f"assigned by rule {decision.rule_id}"
            elif handler.rank not in covering:
                result.append(self._skipped(handler))
                continue
            elif decision.kind in (BY_RULE, BY_TEAM):
                rule = decision.rule
                priority = f" (priority {rule.rule.priority})" if rule is not None else ""
                outcome, why = "lost", f"covers the point, but rule {decision.rule_id}{priority} decides first"
            elif decision.kind == AMBIGUOUS:
                others = ", ".join(coverage.handlers[r].unit.id for r in covering if r != handler.rank)
                outcome, why = "lost", f"covers the point, as does {others}, and no rule settles the overlap"
            else:
                chosen = coverage.handlers[decision.handler_rank].unit.id
                outcome, why = "lost", f"also covers the point but is declared after {chosen}"
            result.append({"unit": unit.id, "outcome": outcome, "why": why})
        if decision.kind in (BY_RULE, BY_TEAM) and all(r["unit"] != decision.unit_id for r in result):
            result.append(
                {"unit": decision.unit_id, "outcome": "chosen", "why": f"assigned by rule {decision.rule_id}"}
            )
        return result

    def rule_trace(
        self, rules: list[CompiledRule], states: bytes, decided_by: int, local: datetime | None
    ) -> list[dict[str, Any]]:
        """The rules that apply to the category, tried in order, up to the one that decided."""
        trace = []
        for rule in rules:
            state = states[rule.position]
            if not state & CATEGORY_OK:
                continue
            entry: dict[str, Any] = {"rule": rule.id, "priority": rule.rule.priority}
            matched = state == ALL_OK
            if rule.position == decided_by:
                entry["outcome"], entry["why"] = "decided", _action_text(rule)
            elif matched and not rule.rule.decides:
                entry["outcome"], entry["why"] = "co-notify", f"matches; tells {', '.join(rule.rule.co_notify)}"
            elif matched:
                entry["outcome"], entry["why"] = "not reached", f"rule {rules[decided_by].id} decided first"
            else:
                entry["outcome"], entry["why"] = "no match", failed_conditions(rule, state, local)
            trace.append(entry)
            if rule.position == decided_by:
                break
        return trace

    def fallback_why(self, code: str, decision: Decision, coverage: Coverage, located: dict[str, int]) -> str:
        if decision.kind == AMBIGUOUS:
            units = ", ".join(h.unit.id for h in coverage.handlers if h.covers(located))
            return (
                f"units {units} all cover this point for {code} and no rule gives one precedence; "
                f"sent to {self.fallback_unit} to decide (`cityloop city lint` reports the overlap)"
            )
        return f"no unit that handles {code} covers this point; sent to {self.fallback_unit}"


def _action_text(rule: CompiledRule) -> str:
    parts = []
    if rule.rule.assign is not None:
        parts.append(f"assigns {rule.rule.assign}")
    if rule.rule.nearest_team_of is not None:
        parts.append(f"nearest field team of {rule.rule.nearest_team_of} with spare capacity")
    if rule.rule.co_notify:
        parts.append(f"tells {', '.join(rule.rule.co_notify)}")
    if rule.rule.match.hours is not None:
        parts.append(f"during {window_text(rule.rule.match.hours)}")
    return "; ".join(parts)
