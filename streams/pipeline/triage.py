"""Stage *triage decisions*: a person's category for a report that waited, read from the feedback stream.

A ``triage_decision`` event names the incident waiting in the triage queue, the
category and who decided. Valid, it becomes a sighting as sure as a service
code (``classified_by: person``) that goes on to *merge* and *route* like any
other, plus a ``triaged`` event: a labelled example for retraining. Invalid
(missing fields, a category the city does not have, nothing waiting), it is
dead-lettered with stage ``triage``. A report located by an address only
needs the decision to give its point (``lat``, ``lon``); a decision may also
move a located report's point. Other feedback events pass by: the
worker's lifecycle (streams/lifecycle.py) reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatch import CityPack
from streams.ids import parse_iso
from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter, Emission, Sighted
from streams.pipeline.build import Records
from streams.records import Rejected, decode_point, parse_object
from streams.state import TriageQueue


@dataclass
class Decisions:
    sighted: list[Sighted] = field(default_factory=list)
    labels: list[Emission] = field(default_factory=list)
    rejected: list[tuple[Envelope, DeadLetter]] = field(default_factory=list)


class TriageDecisions:
    def __init__(self, pack: CityPack, triage: TriageQueue, records: Records) -> None:
        self.pack = pack
        self.triage = triage
        self.records = records

    async def __call__(self, envelopes: Sequence[Envelope], now: datetime) -> Decisions:
        out = Decisions()
        for envelope in envelopes:
            try:
                record = parse_object(envelope.value)
            except Rejected as exc:
                out.rejected.append((envelope, DeadLetter("feedback", exc.code, exc.reason)))
                continue
            if record.get("type") == "triage_decision":
                await self._decision(envelope, record, now, out)
        return out

    async def _decision(self, envelope: Envelope, record: dict[str, Any], now: datetime, out: Decisions) -> None:
        incident_id, category, by = record.get("incident_id"), record.get("category"), record.get("decided_by")
        if not isinstance(incident_id, str) or not isinstance(category, str) or not isinstance(by, str) or not by:
            why = "a triage_decision needs string fields incident_id, category and decided_by"
            out.rejected.append((envelope, DeadLetter("triage", "missing_field", why)))
            return
        if self.pack.category(category) is None:
            why = f"category {category!r} is not in city pack {self.pack.name}"
            out.rejected.append((envelope, DeadLetter("triage", "unknown_category", why)))
            return
        item = await self.triage.get(incident_id)
        if item is None:
            why = f"incident {incident_id} is not waiting in the triage queue"
            out.rejected.append((envelope, DeadLetter("triage", "not_in_triage", why)))
            return
        given = record.get("lat") is not None or record.get("lon") is not None
        try:
            lat, lon = decode_point(record) if given or item.get("lat") is None else (item["lat"], item["lon"])
        except Rejected as exc:
            why = f"incident {incident_id}: {exc.reason}"
            if item.get("lat") is None:
                why += "; the report names only an address, so the decision must give its lat and lon"
            out.rejected.append((envelope, DeadLetter("triage", exc.code, why)))
            return
        out.labels.append(self.records.labelled(incident_id, category, by, item, now))
        out.sighted.append(
            Sighted(
                envelope=envelope,
                ledger_key=f"decision:{incident_id}",
                source_id=item["source_id"],
                new_incident_id=incident_id,
                origin="report",
                category=category,
                confidence=1.0,
                method="person",
                top=[[category, 1.0]],
                lat=lat,
                lon=lon,
                event_time=parse_iso(item["event_time"]),
                text=item["text"],
                address=item.get("address"),
                decided_by=by,
                channel=item.get("channel", "staff"),
            )
        )
