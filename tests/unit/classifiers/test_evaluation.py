"""Evaluation scores as a city would read them: macro averages like scikit-learn's, triage coverage and accuracy."""

from __future__ import annotations

import pytest
from sklearn.metrics import f1_score

from classifiers.evaluation import evaluate, score_triage


def test_macro_f1_counts_a_class_that_is_only_ever_predicted():
    """A wrong prediction of a class no row truly has lowers macro-F1, as scikit-learn's macro average does."""
    true = ["pothole", "pothole", "graffiti", "graffiti"]
    predicted = ["pothole", "noise", "graffiti", "graffiti"]
    scores = evaluate(true, predicted, [0.9, 0.8, 0.7, 0.9])
    assert scores.macro_f1 == pytest.approx(f1_score(true, predicted, average="macro", zero_division=0))
    assert scores.macro_f1 == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    noise = next(c for c in scores.per_class if c.label == "noise")
    assert (noise.support, noise.precision) == (0, 0.0)


def test_a_label_the_model_never_learnt_is_a_miss_in_every_score():
    scores = evaluate(["pothole", "rodents"], ["pothole", "pothole"], [0.9, 0.6])
    assert scores.accuracy == 0.5
    rodents = next(c for c in scores.per_class if c.label == "rodents")
    assert (rodents.support, rodents.recall) == (1, 0.0)


def test_triage_coverage_and_accuracy_of_what_passed():
    true = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    automatic = [True, False, True, True, False]
    score = score_triage(true, predicted, automatic)
    assert (score.rows, score.automatic, score.triaged) == (5, 3, 2)
    assert score.coverage == pytest.approx(0.6) and score.accuracy_automatic == 1.0
    nothing = score_triage(true, predicted, [False] * 5)
    assert (nothing.coverage, nothing.accuracy_automatic) == (0.0, None)
