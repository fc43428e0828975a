"""Why each task of an incident went to its unit, as the task said it: for the board's incident panel.

The dispatcher's explanation (the rule, the areas, every candidate unit and why
it won or lost) travels on the task record, which only the units' systems read.
This keeps a copy of each task record per incident and attempt, written by the
worker once the task is sent (the JSON as sent: nothing is encoded twice):

* ``ns:why:<incident id>``: hash, attempt -> the task record's JSON; it expires
  ``retention_s`` after the last task.

A long explanation keeps every unit that won or lost and the first
:data:`SKIPPED_KEPT` units that were skipped (they do not handle the category
there), with the count of the rest, so a big city's pack does not store a
thousand lines per incident: records longer than :data:`LARGE` bytes are
trimmed before they are stored, every explanation when it is read.
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


# ARGV = namespace, retention (s), then (incident id, attempt, the task record's JSON) triples: one call a batch
_SAVE = """
local ns, ttl = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local key = ns .. ':why:' .. ARGV[i]
  redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
  redis.call('EXPIRE', key, ttl)
end
return (#ARGV - 2) / 3
"""

LARGE = 4096  # bytes: a task record this long is kept with its explanation trimmed (see trimmed)


class TaskReasons:
    """The reasons of each incident's tasks, on a Redis asyncio client."""

    def __init__(self, client: Any, namespace: str, retention_s: int = 30 * 86400) -> None:
        self._redis = client
        self._ns = namespace
        self._retention = retention_s
        self._save = client.register_script(_SAVE)

    async def save(self, tasks: Iterable[tuple[Mapping[str, Any], bytes]]) -> int:
        """Keep each task record (as sent on ``<prefix>.tasks``: the record and its JSON); one round trip.

        The JSON is stored as sent, unless it is longer than :data:`LARGE` bytes: then the record is stored
        with its explanation :func:`trimmed`. Returns how many were kept.
        """
        args: list[Any] = [self._ns, self._retention]
        for task, encoded in tasks:
            if len(encoded) > LARGE:
                reason = task.get("reason") or {}
                encoded = orjson.dumps(
                    {**task, "reason": {**reason, "explanation": trimmed(reason.get("explanation"))}}
                )
            args += [task["incident_id"], task.get("attempt", 1), encoded]
        if len(args) == 2:
            return 0
        return int(await self._save(keys=[], args=args))

    async def of(self, incident_id: str) -> list[dict[str, Any]]:
        """Every kept reason of the incident's tasks, first attempt first: attempt, task, unit, rule, explanation."""
        stored = await self._redis.hgetall(f"{self._ns}:why:{incident_id}")
        reasons = []
        for attempt, value in stored.items():
            task = orjson.loads(value)
            reason = task.get("reason") or {}
            reasons.append({"attempt": int(attempt), "task_id": task.get("task_id"), "unit_id": task.get("unit_id"),
                            "rule": reason.get("rule"), "dispatched_at": task.get("dispatched_at"),
                            "explanation": trimmed(reason.get("explanation"))})  # fmt: skip
        return sorted(reasons, key=lambda r: r["attempt"])


__all__ = ["LARGE", "SKIPPED_KEPT", "TaskReasons", "trimmed"]
