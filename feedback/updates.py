"""What a reporter is told as a work order moves: the entries of the Open311 status-updates feed.

An order's change (:class:`feedback.store.Change`) yields one entry per step a reporter would care about (it was
assigned, signed for, worked on, put on hold for them, reported fixed, closed, reopened, merged, cancelled), read
from the history entries the change added. The entry keeps facts only (the event, the state it led to, the unit,
the words a person gave); :func:`describe` turns it into plain words when the feed is read, with the unit's name
from the city pack, so an entry never carries wording or names that may change.

Steps that a later step of the same change speaks for are left out: a rejection or a recategorisation is followed
by the next dispatch (or arbitration), a verification by the close.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from feedback.orders import State, WorkOrder
from feedback.times import iso_utc, parse_iso

#: the Open311 status a request has in each order state: the status-updates extension's values (mySociety's
#: ``status_extended``); ``fixed`` and ``no_further_action`` are its closed ones, as ``requests/{id}`` says
#: ``closed`` exactly when the order is closed or cancelled
STATUS_OF_STATE: dict[State, str] = {
    State.DISPATCHED: "open",
    State.ACKNOWLEDGED: "action_scheduled",
    State.IN_PROGRESS: "in_progress",
    State.WAITING: "in_progress",
    State.REJECTED: "open",
    State.ARBITRATION: "open",
    State.RECATEGORISED: "open",
    State.RESOLVED: "in_progress",
    State.VERIFIED: "in_progress",
    State.CLOSED: "fixed",
    State.REOPENED: "open",
    State.MERGED: "open",
    State.CANCELLED: "no_further_action",
}
CLOSED_STATUSES = frozenset({"fixed", "closed", "no_further_action"})

#: the events whose step is told to reporters (others are spoken for by their follow-up, or are not theirs)
TOLD = frozenset("dispatched assign arbitrate ack start wait resume resolve close reopen merge_order cancel".split())
TEXT_LIMIT = 1000  # characters of a person's words kept in an entry
UPDATES = "updates"  # ns:updates, the reporters' feed (feedback/store.py)
UPDATES_KEEP_S = 90 * 86_400  # as long as Open311's widest query window
UPDATES_LEN = 200_000  # entries kept at most (about 250 bytes each)


def _words(entry: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = entry.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:TEXT_LIMIT]
    return None


def entries_of(before: WorkOrder | None, after: WorkOrder, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The feed entries of one change: a dict per told step, in the order the steps were applied.

    ``seq`` is the order's version after the change and the step's place in it, so entries of one order sort in
    the order they happened even within a millisecond.
    """
    applied = set(event_ids)
    if not applied:
        return []
    version = (0 if before is None else before.version) + 1
    added: list[Mapping[str, Any]] = []
    for entry in reversed(after.history):  # the change's entries are the newest ones: stop at the first older one
        if entry.get("event_id") not in applied:
            break
        added.append(entry)
    out: list[dict[str, Any]] = []
    for entry in reversed(added):
        kind = entry.get("type")
        if kind not in TOLD:
            continue
        fact: dict[str, Any] = {  # "at" and "seq" first: entries of one time sort by them in Redis too
            "at": iso_utc(parse_iso(str(entry.get("at")))),
            "seq": f"{version:08d}.{len(out):03d}",
            "event_id": entry["event_id"],
            "incident_id": after.incident_id,
            "type": kind,
            "state": entry.get("to"),
            "unit_id": entry.get("unit_id") or after.unit_id,
        }
        if str(entry.get("actor", "")).startswith("sensor:"):
            fact["by_sensor"] = True
        text = _words(entry, "note", "reason")
        if kind == "close":
            text = _words(after.resolution or {}, "note")
        if text is not None:
            fact["text"] = text
        media = entry.get("media_url") if kind == "resolve" else None
        if isinstance(media, str) and media:
            fact["media_url"] = media
        out.append(fact)
    return out


def _unit(entry: Mapping[str, Any], unit_names: Mapping[str, str]) -> str:
    # never an internal unit id: a unit the pack no longer names is "the responsible team"
    return unit_names.get(str(entry.get("unit_id")), "the responsible team")


def describe(entry: Mapping[str, Any], unit_names: Mapping[str, str]) -> str:
    """An entry in plain words for the person who reported the problem."""
    kind = entry.get("type")
    unit = _unit(entry, unit_names)
    text = entry.get("text")
    if kind == "note":
        return str(text or "")
    if kind in ("dispatched", "assign"):
        return f"Assigned to {unit}."
    if kind == "arbitrate":
        return "Being reassigned to the responsible team."
    if kind == "ack":
        return f"{unit} has taken the request."
    if kind == "start":
        return f"{unit} is working on it."
    if kind == "wait":
        return f"{unit} needs more information from you: {text or 'please get in touch'}."
    if kind == "resume":
        return f"{unit} is working on it again."
    if kind == "resolve":
        return f"{unit} reports it fixed" + (f": {text}" if text else "") + ". Awaiting verification."
    if kind == "close":
        return "Fixed and verified." + (f" {text}" if text else "")
    if kind == "reopen":
        if entry.get("by_sensor"):
            return "Reopened: the sensor at the spot reported the problem again."
        return f"Reopened: {text or 'not fixed'}."
    if kind == "merge_order":
        return "Merged with another request about the same problem; its updates follow here."
    if kind == "cancel":
        return f"Closed without action: {text or 'cancelled by the operations centre'}."
    return "Updated."


def status_of(entry: Mapping[str, Any]) -> str:
    """The entry's Open311 status (a note carries the one the request had when it was posted)."""
    if entry.get("status"):
        return str(entry["status"])
    try:
        return STATUS_OF_STATE[State(entry.get("state"))]
    except ValueError:
        return "open"


def update_id(request_id: str, event_id: str) -> str:
    """A request's update id: stable (the event's id is) and unique (one per request and event), and opaque."""
    return f"{request_id}_{hashlib.sha256(event_id.encode('utf-8')).hexdigest()[:12]}"


def entry_ms(entry: Mapping[str, Any]) -> int:
    """Where an entry sorts in the feed: its time in whole ms (floored, as a query's start and end are, so an entry
    timed exactly at a query's end is in it)."""
    return int(parse_iso(str(entry["at"])).timestamp() * 1000)


def feed_ops(key: str, before: WorkOrder | None, after: WorkOrder, event_ids: Sequence[str]) -> list[list[Any]]:
    """The order store's operations for the reporters' feed at ``key`` (run in its save script): an entry per told
    step, one trim, the report that opened the order, and which order a merged one now follows.

    An order's reports (``key:src:<incident>``; those that join it are added by the lifecycle from their merged
    notices) are kept as long as the feed, refreshed while the order changes: the incident index forgets them a week
    after the last report, and a repair may take longer than that.
    """
    ops: list[list[Any]] = []
    keep = str(UPDATES_KEEP_S)
    if before is None and str(after.source_id).startswith("report:"):
        ops.append(["sadd", f"{key}:src:{after.incident_id}", after.source_id, keep])
    entries = entries_of(before, after, event_ids)
    for entry in entries:
        ops.append(["zadd", key, str(entry_ms(entry)), orjson.dumps(entry).decode()])
    if entries:
        oldest = int((after.updated_at.timestamp() - UPDATES_KEEP_S) * 1000)
        ops.append(["ztrim", key, str(oldest), str(UPDATES_LEN)])
        ops.append(["expire", f"{key}:src:{after.incident_id}", keep])
        ops.append(["expire", f"{key}:from:{after.incident_id}", keep])
    if after.merged_into and (before is None or before.merged_into != after.merged_into):
        ops.append(["sadd", f"{key}:from:{after.merged_into}", after.incident_id, keep])
    return ops
