"""Stage *classify*: a category and a confidence for each report, and whether a person must decide.

A reporter's service code wins when the city knows it; otherwise the text
model predicts, and the triage policy (per-category thresholds) marks the
reports it is not sure enough about, or whose category is not in this city's
pack, for the ops centre. A report located by an address only (no point) goes
to the ops centre too, whatever its category: a person must place it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from classifiers import TextClassifier
from classifiers.triage import TriagePolicy
from dispatch import CityPack
from streams.ids import report_incident, report_source
from streams.outcomes import Envelope
from streams.pipeline.batch import Sighted
from streams.records import Report


@dataclass
class Classify:
    pack: CityPack
    classifier: TextClassifier
    triage_policy: TriagePolicy
    model_version: str = "seed"  # recorded on what the model classifies; the worker swaps all three together

    def __call__(self, items: list[tuple[Envelope, Report]], now: datetime) -> list[Sighted]:
        result = [self._by_code(envelope, report) for envelope, report in items]
        by_text = [i for i, sighting in enumerate(result) if sighting.category is None]
        if by_text:
            predictions = self.classifier.predict([items[i][1].text for i in by_text])
            for index, prediction in zip(by_text, predictions, strict=True):
                in_pack = self.pack.category(prediction.category) is not None
                result[index] = replace(
                    result[index],
                    category=prediction.category if in_pack else None,
                    confidence=prediction.confidence,
                    method="text_model",
                    top=[list(pair) for pair in prediction.top],
                    triage=result[index].triage or not in_pack or self.triage_policy.needs_triage(prediction),
                    model_version=self.model_version,
                )
        return result

    def _by_code(self, envelope: Envelope, report: Report) -> Sighted:
        code = report.service_code
        known = code is not None and self.pack.category(code) is not None
        source = report_source(report.report_id)
        return Sighted(
            envelope=envelope,
            ledger_key=source,
            source_id=source,
            new_incident_id=report_incident(report.report_id),
            origin="report",
            category=code if known else None,
            confidence=1.0,
            method="service_code",
            top=[[code, 1.0]] if known else [],
            lat=report.lat,
            lon=report.lon,
            event_time=report.reported_at,
            text=report.text,
            address=report.address or (f"address id {report.address_id}" if report.address_id else None),
            channel=report.source,
            triage=not report.located,
        )
