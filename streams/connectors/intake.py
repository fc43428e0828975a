"""From the topics to the connectors' queues: which connected unit gets which task and event.

A task goes to the system of the unit it is for. A lifecycle event goes to the system of the unit it names and to
the system of the connected unit that holds the incident's newest task, so a unit's system also hears that its
order was given to someone else (an ``assign`` names the new unit) or cancelled; except that a ``dispatched``,
``arbitrate`` or ``assign`` event does not go to the unit it hands the order to, which gets the task instead. Who
holds an incident is kept in Redis (``connector:holder:<incident>``), updated from tasks and from ``dispatched``,
``arbitrate`` and ``assign`` events. A record that is not JSON, or not for a connected unit, is passed over: the
worker wrote it, and connectors only forward.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.connectors.base import Delivery, Kind

HOLDING_EVENTS = frozenset({"dispatched", "arbitrate", "assign"})


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _record(message: Message) -> tuple[str, dict[str, Any]] | None:
    if message.value is None:
        return None
    try:
        text = message.value.decode("utf-8")
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("incident_id"), str):
        return None
    return text, record


def incidents_of(messages: Iterable[Message]) -> list[str]:
    found = {parsed[1]["incident_id"] for m in messages if (parsed := _record(m)) is not None}
    return sorted(found)


def route(
    messages: Iterable[Message],
    *,
    tasks_topic: str,
    sends: Mapping[str, frozenset[str]],
    holders: dict[str, str],
    now: float,
) -> tuple[list[Delivery], dict[str, str | None]]:
    """The deliveries a batch makes, in order, and who holds each incident after it.

    ``sends``: unit id -> what its connector sends (``tasks``, ``events``); ``holders``: the connected unit holding
    each incident before the batch (changed in place as the batch moves on).
    """
    deliveries: list[Delivery] = []
    holds: dict[str, str | None] = {}

    def deliver(unit: str | None, kind: Kind, key: Any, text: str, m: Message) -> None:
        wanted = "tasks" if kind is Kind.TASK else "events"
        if unit is None or wanted not in sends.get(unit, ()) or not isinstance(key, str) or not key:
            return
        partition_key = None if m.key is None else m.key.decode("utf-8", errors="replace")
        deliveries.append(Delivery(unit, kind, key, text, (m.topic, m.partition, m.offset), partition_key, now))

    def hold(incident: str, unit: Any) -> None:
        holder = unit if isinstance(unit, str) and unit in sends else None
        holds[incident] = holder
        if holder is None:
            holders.pop(incident, None)
        else:
            holders[incident] = holder

    for message in messages:
        parsed = _record(message)
        if parsed is None:
            continue
        text, record = parsed
        incident, unit = record["incident_id"], record.get("unit_id")
        if message.topic == tasks_topic:
            deliver(unit, Kind.TASK, record.get("task_id"), text, message)
            hold(incident, unit)
            continue
        # the unit a dispatch names gets the task itself (its own record, on the tasks topic): not this event too,
        # which could reach it first, as the two topics are read side by side
        hands_over = record.get("type") in HOLDING_EVENTS
        targets = [unit] if isinstance(unit, str) and not hands_over else []
        holder = holders.get(incident)
        if holder is not None and holder not in targets:
            targets.append(holder)
        for target in targets:
            deliver(target, Kind.EVENT, record.get("event_id"), text, message)
        if hands_over:
            hold(incident, unit)
    return deliveries, holds
