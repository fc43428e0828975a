"""The promotion rule: macro-F1 on the recent decisions first, accuracy on a tie, and a tie keeps the champion."""

from __future__ import annotations

import pytest

from classifiers import seed_classifier
from classifiers.challenge import Score, challenger_wins, score
from classifiers.triage import TriagePolicy


def s(macro_f1: float, accuracy: float) -> Score:
    return Score(rows=10, macro_f1=macro_f1, accuracy=accuracy, automatic=0.5, accuracy_automatic=None)


@pytest.mark.parametrize(
    ("champion", "challenger", "wins"),
    [
        (s(0.50, 0.60), s(0.60, 0.60), True),  # better macro-F1
        (s(0.50, 0.90), s(0.60, 0.50), True),  # better macro-F1 wins even with worse accuracy
        (s(0.60, 0.60), s(0.50, 0.95), False),  # worse macro-F1 loses whatever the accuracy
        (s(0.60, 0.60), s(0.60, 0.70), True),  # equal macro-F1: accuracy decides
        (s(0.60, 0.70), s(0.60, 0.60), False),
        (s(0.60, 0.60), s(0.60, 0.60), False),  # equal on both: the champion stays
    ],
)
def test_the_challenger_wins_only_by_the_stated_rule(champion, challenger, wins):
    assert challenger_wins(champion, challenger) is wins


def test_both_models_are_scored_on_the_same_rows_with_their_own_triage_policy():
    model = seed_classifier()
    texts = ["deep pothole in the road", "the streetlight is out", "graffiti on the wall"]
    labels = ["pothole", "streetlight", "graffiti"]
    everything = score(model, TriagePolicy(0.0), texts, labels)
    nothing = score(model, TriagePolicy(1.0), texts, labels)
    assert everything.rows == nothing.rows == 3
    assert everything.automatic == 1.0 and nothing.automatic == 0.0 and nothing.accuracy_automatic is None
    assert everything.macro_f1 == nothing.macro_f1
