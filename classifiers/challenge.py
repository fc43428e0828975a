"""Champion against challenger: both scored on the same recent decisions; the rule that decides a promotion.

The rule: the challenger wins when its macro-F1 on the held-out recent examples is higher than the champion's;
on equal macro-F1 (within 1e-9), when its accuracy is higher. Equal on both keeps the champion: a new model
costs a reload and a new version in every incident, and gains nothing. Macro-F1 leads because the decisions that
reach the ops centre are the rare and the confusing categories, which plain accuracy would let the common ones
hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from classifiers.evaluation import evaluate, score_triage
from classifiers.text import TextClassifier
from classifiers.triage import TriagePolicy

TIE = 1e-9


@dataclass(frozen=True)
class Score:
    rows: int
    macro_f1: float
    accuracy: float
    automatic: float  # share that the model's own triage policy would dispatch without a person
    accuracy_automatic: float | None  # how often those were right

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(model: TextClassifier, policy: TriagePolicy, texts: Sequence[str], labels: Sequence[str]) -> Score:
    answers = model.predict(list(texts), top_k=1)
    predicted = [a.category for a in answers]
    result = evaluate(list(labels), predicted, [a.confidence for a in answers])
    triage = score_triage(list(labels), predicted, [not policy.needs_triage(a) for a in answers])
    return Score(result.rows, result.macro_f1, result.accuracy, triage.coverage, triage.accuracy_automatic)


def challenger_wins(champion: Score, challenger: Score) -> bool:
    """The promotion rule (module docstring)."""
    if challenger.macro_f1 > champion.macro_f1 + TIE:
        return True
    if abs(challenger.macro_f1 - champion.macro_f1) <= TIE:
        return challenger.accuracy > champion.accuracy + TIE
    return False
