"""The ops centre's decisions as labelled examples: folded from the feedback stream's events, in stream order.

Two kinds of event say what a report really was:

- ``triaged``: a person decided the category of a report the model was unsure about; it carries the report's text;
- ``recategorise``: a person changed the category of an incident already dispatched (the model, or a reporter's
  service code, was wrong); it carries no text, so the text is the one the incident's first ``dispatched`` event
  carries (the report that opened it; merged repeats are not used: they are often short "same here" messages).

One example per incident: its latest decision wins (a triaged report later recategorised is labelled with the
second category). Every event that should have become an example and could not is counted by a reason, never
dropped silently: :data:`SKIP_REASONS`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LABEL_EVENTS = frozenset({"triaged", "recategorise"})
SKIP_REASONS = (
    "unreadable",  # not a JSON object (the caller counts it)
    "missing_field",  # no incident_id, category or time, or not strings
    "bad_time",  # a time without a zone, or not ISO 8601
    "no_text",  # a recategorisation whose incident's text is not on the stream (a sensor's, or past retention)
)


@dataclass(frozen=True)
class LabelledExample:
    """A report's text, the category a person gave it, and when."""

    incident_id: str
    text: str
    category: str
    at: datetime
    kind: str  # "triaged" or "recategorise"


@dataclass
class ExampleFolder:
    """Feed it the feedback stream's records in order (:meth:`add`); read :meth:`examples` and :attr:`skipped`."""

    texts: dict[str, str] = field(default_factory=dict)
    latest: dict[str, LabelledExample] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    read: Counter[str] = field(default_factory=Counter)

    def add(self, record: Mapping[str, Any]) -> None:
        kind = record.get("type")
        incident_id = record.get("incident_id")
        if kind == "dispatched" and isinstance(incident_id, str) and isinstance(record.get("text"), str):
            self.texts.setdefault(incident_id, record["text"])  # the opening report's; later attempts repeat it
            return
        if kind not in LABEL_EVENTS:
            return
        self.read[str(kind)] += 1
        category, at = record.get("category"), record.get("at")
        if not (isinstance(incident_id, str) and isinstance(category, str) and category and isinstance(at, str)):
            self.skipped["missing_field"] += 1
            return
        when = _time(at)
        if when is None:
            self.skipped["bad_time"] += 1
            return
        text = record.get("text") if kind == "triaged" else self.texts.get(incident_id)
        if not isinstance(text, str) or not text.strip():
            self.skipped["missing_field" if kind == "triaged" else "no_text"] += 1
            return
        self.texts.setdefault(incident_id, text)
        previous = self.latest.get(incident_id)
        if previous is None or when >= previous.at:
            self.latest[incident_id] = LabelledExample(incident_id, text, category, when, str(kind))

    def unreadable(self, count: int = 1) -> None:
        """A record that is not a JSON object: counted, since it might have been a decision."""
        self.skipped["unreadable"] += count

    def examples(self) -> list[LabelledExample]:
        """One example per incident, oldest first (ties by incident id, so the order is the same every run)."""
        return sorted(self.latest.values(), key=lambda e: (e.at, e.incident_id))


def fold(records: Iterable[Mapping[str, Any]]) -> ExampleFolder:
    folder = ExampleFolder()
    for record in records:
        folder.add(record)
    return folder


def _time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def recent_split(examples: list[LabelledExample], fraction: float, minimum: int = 1) -> tuple[list, list]:
    """(older, newest): the newest ``fraction`` of the examples (at least ``minimum``) held out, by time.

    A time split, not a random one: the question is whether the challenger does better on what the ops
    centre is deciding *now*, having learnt only from what came before.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    held = min(len(examples), max(minimum, math.ceil(fraction * len(examples))))
    cut = len(examples) - held
    return examples[:cut], examples[cut:]
