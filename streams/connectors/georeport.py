"""GeoReport v2 for the ``open311`` connector, as pure functions: a task as a request, a request's status as a
unit action.

* **A task as a request** (:func:`request_form`): ``service_code`` from the connector's category map (a category it
  does not map is :class:`Unmappable`: the task is dead-lettered, not guessed), ``lat``/``long`` and
  ``address_string`` from the task, ``description`` naming the category, the incident and the task, and ending in
  the task's mark (:func:`mark`), the only thing by which a request can be found again: GeoReport v2 has no
  idempotency key, and ``description`` is the one free field every server returns.
* **A status as an action** (:func:`observe`): plain GeoReport v2 tells ``open`` from ``closed`` and gives
  ``status_notes``. ``closed`` is a ``resolve`` with the notes as its note, unless the notes match the pack's
  ``status_notes.rejected`` pattern (a ``reject``, reason ``other`` with the notes); an ``open`` request is only
  more than "dispatched" when its notes match ``status_notes.resolved`` (a ``resolve``) or ``acknowledged`` (an
  ``ack``). Any status but ``closed`` counts as open (some servers add their own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatch.connectors import Open311Connector, StatusNotes

MAX_DESCRIPTION = 4000  # GeoReport v2's limit
_MARK = re.compile(r"\[cityloop task ([\x21-\x5a\x5c\x5e-\x7e]{1,128})\]")


class Unmappable(ValueError):
    """A task the connector cannot express as a request of that system (the message says why)."""


def mark(task_id: str) -> str:
    return f"[cityloop task {task_id}]"


def marked_task(description: Any) -> str | None:
    """The task id a request's description carries, if it is one this connector posted."""
    if not isinstance(description, str):
        return None
    found = _MARK.search(description)
    return None if found is None else found.group(1)


def request_form(task: dict[str, Any], spec: Open311Connector, api_key: str) -> dict[str, str]:
    """The form of ``POST requests.json`` for one task record (docs/CONTRACT.md)."""
    category = task.get("category")
    code = spec.service_codes.get(category) if isinstance(category, str) else None
    if code is None:
        mapped = ", ".join(sorted(spec.service_codes))
        raise Unmappable(f"category {category!r} has no service_code in connector.service_codes (it maps: {mapped})")
    form = {"api_key": api_key, "service_code": code}
    lat, lon, address = task.get("lat"), task.get("lon"), task.get("address")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        form["lat"], form["long"] = repr(float(lat)), repr(float(lon))
    if isinstance(address, str) and address.strip():
        form["address_string"] = address.strip()[:512]
    if "lat" not in form and "address_string" not in form:
        raise Unmappable(f"task {task.get('task_id')} has neither a point nor an address to send")
    if spec.jurisdiction_id:
        form["jurisdiction_id"] = spec.jurisdiction_id
    tail = f" {mark(str(task['task_id']))}"
    text = f"{category} (CityLoop incident {task.get('incident_id')}, attempt {task.get('attempt', 1)})."
    form["description"] = text[: MAX_DESCRIPTION - len(tail)] + tail
    return form


def request_id_of(answer: Any) -> tuple[str | None, str | None]:
    """(service_request_id, token) of a POST's JSON answer (``[{service_request_id | token, ...}]``)."""
    first = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(first, dict):
        return None, None
    rid, token = first.get("service_request_id"), first.get("token")
    return (str(rid) if rid not in (None, "") else None), (str(token) if token not in (None, "") else None)


def error_text(answer: Any) -> str:
    """GeoReport v2's error list (``[{code, description}]``) as one line; else the answer itself, shortened."""
    if isinstance(answer, list) and answer and isinstance(answer[0], dict) and "description" in answer[0]:
        return "; ".join(f"{e.get('code')}: {e.get('description')}" for e in answer if isinstance(e, dict))[:300]
    return str(answer)[:300]


@dataclass(frozen=True)
class Observed:
    """What a request's status amounts to: the unit action (``ack``, ``resolve``, ``reject``) and its fields."""

    type: str
    fields: dict[str, str]


def _matches(pattern: str | None, notes: str) -> bool:
    return pattern is not None and re.search(pattern, notes, re.IGNORECASE) is not None


def observe(request: dict[str, Any], notes_of: StatusNotes, system: str) -> Observed | None:
    """The action a request's status means, or None while it says no more than "received" (docs/CONNECTORS.md)."""
    status = str(request.get("status") or "").strip().lower()
    notes = str(request.get("status_notes") or "").strip()[:2000]
    if status == "closed":
        if _matches(notes_of.rejected, notes):
            return Observed("reject", {"reason_code": "other", "reason": notes or f"closed by {system}"})
        return Observed("resolve", {"note": notes or f"closed by {system}"})
    if _matches(notes_of.resolved, notes):
        return Observed("resolve", {"note": notes})
    if _matches(notes_of.acknowledged, notes):
        return Observed("ack", {"note": notes})
    return None


def lookup_since(posted_at: float, skew_s: float = 300.0) -> str:
    """``start_date`` for finding a request posted at ``posted_at`` (unix seconds), allowing for clock skew."""
    return datetime.fromtimestamp(posted_at - skew_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
