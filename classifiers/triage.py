"""Triage: which classifications a person should check, and how their decision becomes training data.

Pure policy and data, no queue: the engine asks :meth:`TriagePolicy.needs_triage` per
report and routes the doubtful ones to the ops centre; whoever decides records a
:class:`TriageDecision`, and :func:`training_row` turns it into a row that
``cityloop train`` reads (``text,category,decided_by,at``).

Thresholds are per city: :func:`choose_thresholds` picks, from held-out predictions of
that city's model, the lowest confidence at which automatic dispatch is still right
often enough (a target precision), per category where there is enough evidence.
:func:`thresholds_from_out_of_fold` feeds it the model's cross-validated answers for every
training row, which are five times as many as a 20% holdout and so less noisy.

Confidence alone cannot catch text unlike anything the model learnt from: a model that
knows "abandoned car" answers "5 abandoned mattresses" with abandoned_vehicle 0.98. So a
report whose words are mostly unknown to the model (``max_unknown_share``) also waits for
a person, whatever the confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from classifiers.errors import ClassifierError, TrainingDataError
from classifiers.text import Classification, TextClassifier

TRAINING_COLUMNS = ("text", "category", "decided_by", "at")
# Half or more of a report's words never seen in training: a person decides (see the module doc).
DEFAULT_MAX_UNKNOWN_SHARE = 0.5


def _check_threshold(value: float, what: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ClassifierError(f"{what} must be a number in [0, 1], not {value!r}")
    return float(value)


@dataclass(frozen=True)
class TriagePolicy:
    """Send a classification to a person when its confidence is below its category's threshold.

    Or when at least ``max_unknown_share`` of its words are unknown to the model (1.0 and
    above turns that check off; a classification without ``unknown_share`` is never caught by it).
    """

    default_threshold: float
    thresholds: Mapping[str, float] = field(default_factory=dict)
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE

    def __post_init__(self) -> None:
        _check_threshold(self.default_threshold, "default_threshold")
        checked = {str(c): _check_threshold(t, f"threshold of {c!r}") for c, t in self.thresholds.items()}
        object.__setattr__(self, "thresholds", MappingProxyType(checked))
        object.__setattr__(self, "max_unknown_share", _check_threshold(self.max_unknown_share, "max_unknown_share"))

    def threshold_for(self, category: str) -> float:
        return self.thresholds.get(category, self.default_threshold)

    def is_unfamiliar(self, classification: Classification) -> bool:
        """True when too many of the text's words were never seen in training for the answer to be trusted."""
        share = classification.unknown_share
        return share is not None and self.max_unknown_share < 1.0 and share >= self.max_unknown_share

    def needs_triage(self, classification: Classification) -> bool:
        """True when a person should confirm or correct the category before dispatch."""
        return classification.confidence < self.threshold_for(classification.category) or self.is_unfamiliar(
            classification
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "default_threshold": self.default_threshold,
            "thresholds": dict(self.thresholds),
            "max_unknown_share": self.max_unknown_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriagePolicy:
        try:
            return cls(
                float(data["default_threshold"]),
                dict(data.get("thresholds") or {}),
                float(data.get("max_unknown_share", DEFAULT_MAX_UNKNOWN_SHARE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClassifierError(f"invalid triage policy {dict(data)!r}: {exc}") from None


def _lowest_threshold(confidences: Sequence[float], correct: Sequence[bool], target: float) -> float | None:
    """The lowest t such that predictions with confidence >= t are right at least ``target`` of the time."""
    pairs = sorted(zip(confidences, correct, strict=True), key=lambda p: -p[0])
    hits = 0
    best: float | None = None
    for n, (confidence, right) in enumerate(pairs, start=1):
        hits += right
        is_last_of_tie = n == len(pairs) or pairs[n][0] != confidence
        if is_last_of_tie and hits / n >= target:
            best = confidence
    return best


def choose_thresholds(
    classifications: Sequence[Classification],
    true_categories: Sequence[str],
    *,
    target_precision: float = 0.9,
    min_support: int = 30,
) -> TriagePolicy:
    """A policy from held-out predictions: per category where it has ``min_support`` predictions, else the default.

    A category whose predictions never reach the target gets threshold 1.0 (always
    triaged); so does the default when the model as a whole never reaches it.
    """
    _check_threshold(target_precision, "target_precision")
    if len(classifications) != len(true_categories):
        raise TrainingDataError("classifications and true categories differ in length")
    if not classifications:
        raise TrainingDataError("no held-out predictions to choose thresholds from")
    confidences = [c.confidence for c in classifications]
    correct = [c.category == t for c, t in zip(classifications, true_categories, strict=True)]
    overall = _lowest_threshold(confidences, correct, target_precision)
    default = 1.0 if overall is None else overall
    per_category: dict[str, float] = {}
    for category in sorted({c.category for c in classifications}):
        rows = [i for i, c in enumerate(classifications) if c.category == category]
        if len(rows) < min_support:
            continue
        found = _lowest_threshold([confidences[i] for i in rows], [correct[i] for i in rows], target_precision)
        per_category[category] = 1.0 if found is None else found
    return TriagePolicy(default, per_category)


def thresholds_from_out_of_fold(
    model: TextClassifier,
    true_categories: Sequence[str],
    *,
    target_precision: float = 0.9,
    min_support: int = 30,
) -> TriagePolicy:
    """:func:`choose_thresholds` on the model's out-of-fold answers for its own training rows (``true_categories``).

    Needs a model trained in this process with calibration folds (``model.out_of_fold``).
    """
    oof = model.out_of_fold
    if oof is None:
        raise TrainingDataError("the model has no out-of-fold answers: train it with calibration_folds of 2 or more")
    if len(oof.categories) != len(true_categories):
        raise TrainingDataError(f"{len(true_categories)} true categories for {len(oof.categories)} out-of-fold answers")
    answers = [
        Classification(category, float(confidence), ((category, float(confidence)),))
        for category, confidence in zip(oof.categories, oof.confidences.tolist(), strict=True)
    ]
    return choose_thresholds(
        answers, [str(c) for c in true_categories], target_precision=target_precision, min_support=min_support
    )


@dataclass(frozen=True)
class TriageDecision:
    """A person's decision on a report's category; ``category`` is what they chose."""

    text: str
    category: str
    decided_by: str
    at: datetime
    model_category: str | None = None
    model_confidence: float | None = None


def training_row(decision: TriageDecision, known_categories: Sequence[str] | None = None) -> dict[str, str]:
    """The decision as a labelled row for retraining (columns :data:`TRAINING_COLUMNS`)."""
    if not decision.text.strip():
        raise TrainingDataError("a triage decision without text cannot train a model")
    if not decision.category.strip():
        raise TrainingDataError("a triage decision needs the chosen category")
    if not decision.decided_by.strip():
        raise TrainingDataError("a triage decision needs who decided (decided_by)")
    if decision.at.tzinfo is None:
        raise TrainingDataError("a triage decision's time needs a time zone")
    if known_categories is not None and decision.category not in known_categories:
        raise TrainingDataError(f"unknown category {decision.category!r}; known: {', '.join(known_categories)}")
    return {
        "text": decision.text,
        "category": decision.category,
        "decided_by": decision.decided_by,
        "at": decision.at.isoformat(),
    }
