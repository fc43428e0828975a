"""Triage: which answers a person checks, per-city thresholds from held-out data, decisions as training rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from classifiers import Classification
from classifiers.errors import ClassifierError, TrainingDataError
from classifiers.triage import TriageDecision, TriagePolicy, choose_thresholds, training_row


def answer(category: str, confidence: float) -> Classification:
    return Classification(category, confidence, ((category, confidence),))


@pytest.mark.parametrize(
    ("category", "confidence", "triage"),
    [
        ("pothole", 0.59, True),  # below the default
        ("pothole", 0.60, False),  # at the threshold: dispatched
        ("noise", 0.85, True),  # noise has its own, stricter threshold
        ("noise", 0.90, False),
        ("graffiti", 0.10, False),  # graffiti is always dispatched
    ],
)
def test_needs_triage_uses_the_category_threshold_or_the_default(category, confidence, triage):
    policy = TriagePolicy(0.6, {"noise": 0.9, "graffiti": 0.0})
    assert policy.needs_triage(answer(category, confidence)) is triage


def test_policy_rejects_thresholds_outside_zero_to_one():
    with pytest.raises(ClassifierError):
        TriagePolicy(1.5)
    with pytest.raises(ClassifierError):
        TriagePolicy(0.5, {"noise": float("nan")})


def test_policy_is_immutable_and_round_trips_through_a_dict():
    """A policy cannot be changed in place, and its dict form (for a city pack) reads back equal."""
    policy = TriagePolicy(0.5, {"noise": 0.8})
    with pytest.raises(TypeError):
        policy.thresholds["noise"] = 0.1  # type: ignore[index]
    assert TriagePolicy.from_dict(policy.as_dict()) == policy
    with pytest.raises(ClassifierError):
        TriagePolicy.from_dict({"thresholds": {}})


def test_choose_thresholds_finds_the_lowest_confidence_meeting_the_target():
    """Sorted by confidence, precision stays >= 0.75 down to 0.5 and drops below it after."""
    held_out = [answer("a", c) for c in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)]
    truth = ["a", "a", "b", "a", "a", "b", "b"]  # right: .9 .8 .6 .5; wrong: .7 .4 .3
    policy = choose_thresholds(held_out, truth, target_precision=0.75, min_support=1)
    # at 0.5: 4 right of 5 = 0.8 >= .75; at 0.4: 4 of 6 < .75
    assert policy.threshold_for("a") == 0.5
    assert policy.default_threshold == 0.5


def test_choose_thresholds_falls_back_to_the_default_for_thin_categories():
    """A category with fewer predictions than min_support has no threshold of its own."""
    held_out = [answer("a", 0.9)] * 5 + [answer("b", 0.4)] * 2
    policy = choose_thresholds(held_out, ["a"] * 5 + ["b"] * 2, target_precision=0.9, min_support=5)
    assert "a" in policy.thresholds and "b" not in policy.thresholds


def test_a_category_that_never_reaches_the_target_is_always_triaged():
    held_out = [answer("a", 0.9), answer("a", 0.8)]
    policy = choose_thresholds(held_out, ["b", "b"], target_precision=0.9, min_support=1)
    assert policy.threshold_for("a") == 1.0
    assert policy.needs_triage(answer("a", 0.99))


def test_a_decision_becomes_a_labelled_training_row():
    """The person's category, not the model's, is the label; the time keeps its offset."""
    decision = TriageDecision(
        text="water coming out of the road",
        category="water_main_break",
        decided_by="operator:17",
        at=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
        model_category="flooding",
        model_confidence=0.41,
    )
    assert training_row(decision, ["flooding", "water_main_break"]) == {
        "text": "water coming out of the road",
        "category": "water_main_break",
        "decided_by": "operator:17",
        "at": "2026-05-04T09:30:00+00:00",
    }


@pytest.mark.parametrize(
    ("text", "category", "decided_by", "at", "message"),
    [
        ("  ", "noise", "op", datetime(2026, 1, 1, tzinfo=UTC), "without text"),
        ("loud", "", "op", datetime(2026, 1, 1, tzinfo=UTC), "category"),
        ("loud", "noise", "", datetime(2026, 1, 1, tzinfo=UTC), "decided_by"),
        ("loud", "noise", "op", datetime(2026, 1, 1), "time zone"),
        ("loud", "music", "op", datetime(2026, 1, 1, tzinfo=UTC), "unknown category"),
    ],
)
def test_incomplete_decisions_are_refused(text, category, decided_by, at, message):
    with pytest.raises(TrainingDataError, match=message):
        training_row(TriageDecision(text, category, decided_by, at), known_categories=["noise"])
