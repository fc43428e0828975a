"""The ops centre's decisions become labelled examples: one per incident, the latest decision, nothing lost silently."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from classifiers.examples import LabelledExample, fold, recent_split


def dispatched(incident: str, text: str | None) -> dict:
    record = {"type": "dispatched", "incident_id": incident, "attempt": 1, "at": "2026-11-30T10:00:00Z"}
    if text is not None:
        record["text"] = text
    return record


def triaged(incident: str, category: str, at: str, text: str = "rubbish on the pavement") -> dict:
    return {"type": "triaged", "incident_id": incident, "category": category, "text": text, "at": at}


def recategorise(incident: str, category: str, at: str) -> dict:
    return {"type": "recategorise", "incident_id": incident, "category": category, "at": at, "attempt": 1}


def test_a_triage_decision_is_an_example_with_its_text_category_and_time():
    folder = fold([triaged("inc-1", "illegal_dumping", "2026-11-30T10:05:00Z", "mattresses dumped")])
    (example,) = folder.examples()
    assert example == LabelledExample(
        "inc-1", "mattresses dumped", "illegal_dumping", datetime(2026, 11, 30, 10, 5, tzinfo=UTC), "triaged"
    )


def test_a_recategorisation_labels_the_text_the_incident_was_dispatched_with():
    at = "2026-11-30T11:00:00+00:00"
    folder = fold([dispatched("inc-2", "lamp out on the corner"), recategorise("inc-2", "streetlight", at)])
    (example,) = folder.examples()
    assert (example.text, example.category, example.kind) == ("lamp out on the corner", "streetlight", "recategorise")


def test_the_latest_decision_on_an_incident_wins():
    folder = fold([
        triaged("inc-3", "litter", "2026-11-30T10:00:00Z", "bags by the bins"),
        recategorise("inc-3", "illegal_dumping", "2026-11-30T12:00:00Z"),
    ])  # fmt: skip
    (example,) = folder.examples()
    assert (example.text, example.category) == ("bags by the bins", "illegal_dumping")


def test_records_that_cannot_be_examples_are_counted_by_reason():
    folder = fold([
        recategorise("inc-sensor", "flooding", "2026-11-30T10:00:00Z"),  # no dispatched text: a sensor's incident
        dispatched("inc-sensor2", None),
        recategorise("inc-sensor2", "flooding", "2026-11-30T10:00:00Z"),
        {"type": "triaged", "incident_id": "inc-4", "text": "x", "at": "2026-11-30T10:00:00Z"},  # no category
        triaged("inc-5", "litter", "yesterday"),
        triaged("inc-6", "litter", "2026-11-30T10:00:00"),  # no time zone
        triaged("inc-7", "litter", "2026-11-30T10:00:00Z", text="  "),
        {"type": "merged", "incident_id": "inc-8"},  # not a decision: neither read nor skipped
    ])  # fmt: skip
    folder.unreadable(2)
    assert folder.examples() == []
    assert dict(folder.skipped) == {"no_text": 2, "missing_field": 2, "bad_time": 2, "unreadable": 2}
    assert folder.read == {"recategorise": 2, "triaged": 4}


def test_examples_come_oldest_first_and_the_newest_share_is_held_out():
    records = [triaged(f"inc-{i}", "litter", f"2026-11-30T10:{59 - i:02d}:00Z") for i in range(10)]
    examples = fold(records).examples()
    assert [e.incident_id for e in examples] == [f"inc-{i}" for i in range(9, -1, -1)]
    older, newest = recent_split(examples, 0.3)
    assert [e.incident_id for e in newest] == ["inc-2", "inc-1", "inc-0"]
    assert max(e.at for e in older) < min(e.at for e in newest)
    assert len(recent_split(examples, 0.05, minimum=4)[1]) == 4


def test_the_held_out_share_must_be_a_fraction():
    with pytest.raises(ValueError):
        recent_split([], 1.0)
