"""Why each task of an incident went to its unit, as the task said it: for the board's incident panel.

The dispatcher's explanation (the rule, the areas, every candidate unit and why
it won or lost) travels on the task record, which only the units' systems read.
This keeps a copy per incident and attempt, written by the worker once the task
is sent:

* ``ns:why:<incident id>``: hash, attempt -> JSON ``{task_id, unit_id, rule,
  dispatched_at, explanation}``; it expires ``retention_s`` after the last task.

A long explanation keeps every unit that won or lost and the first
:data:`SKIPPED_KEPT` units that were skipped (they do not handle the category
there), with the count of the rest, so a big city's pack does not store a
thousand lines per incident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

SKIPPED_KEPT = 12


def trimmed(explanation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The explanation with at most :data:`SKIPPED_KEPT` skipped candidates (``skipped_more`` counts the rest)."""
    out = dict(explanation or {})
    candidates = out.get("candidates")
    if not isinstance(candidates, list):
        return out
    skipped = [c for c in candidates if isinstance(c, Mapping) and c.get("outcome") == "skipped"]
    if len(skipped) <= SKIPPED_KEPT:
        return out
    extra = {id(c) for c in skipped[SKIPPED_KEPT:]}
    out["candidates"] = [c for c in candidates if id(c) not in extra]
    out["skipped_more"] = len(extra)
    return out


class TaskReasons:
    """The reasons of each incident's tasks, on a Redis asyncio client."""

    def __init__(self, client: Any, namespace: str, retention_s: int = 30 * 86400) -> None:
        self._redis = client
        self._ns = namespace
        self._retention = retention_s

    async def save(self, tasks: Iterable[Mapping[str, Any]]) -> int:
        """Keep the reason of each task record (as on ``<prefix>.tasks``); one round trip. Returns how many."""
        pipe = self._redis.pipeline(transaction=False)
        saved = 0
        for task in tasks:
            reason = task.get("reason") or {}
            entry = {
                "task_id": task.get("task_id"),
                "unit_id": task.get("unit_id"),
                "rule": reason.get("rule"),
                "dispatched_at": task.get("dispatched_at"),
                "explanation": trimmed(reason.get("explanation")),
            }
            key = f"{self._ns}:why:{task['incident_id']}"
            pipe.hset(key, str(task.get("attempt", 1)), orjson.dumps(entry))
            pipe.expire(key, self._retention)
            saved += 1
        if saved:
            await pipe.execute()
        return saved

    async def of(self, incident_id: str) -> list[dict[str, Any]]:
        """Every kept reason of the incident's tasks, first attempt first, each with its ``attempt``."""
        stored = await self._redis.hgetall(f"{self._ns}:why:{incident_id}")
        reasons = [{"attempt": int(attempt), **orjson.loads(value)} for attempt, value in stored.items()]
        return sorted(reasons, key=lambda r: r["attempt"])


__all__ = ["SKIPPED_KEPT", "TaskReasons", "trimmed"]
