"""How good a model is on labelled rows: accuracy, macro-F1, per-class scores, confusions, calibration, speed.

Pure functions over plain sequences; the caller passes every row (a row whose label the model never learnt is a
miss, as it would be in production) and the clock for latency. Macro averages follow scikit-learn: over every class
that is a true label or a prediction, so a class the model predicts wrongly and never truly sees still counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from classifiers.errors import TrainingDataError


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: over equal-width confidence bins ((m-1)/M, m/M], the row-weighted mean |accuracy - mean confidence|."""
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.shape != hits.shape:
        raise ValueError("confidences and correct differ in length")
    if conf.size == 0:
        return 0.0
    # searchsorted on the inner edges puts a confidence equal to an edge in the bin that edge closes.
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], conf, side="left")
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() / conf.size * abs(hits[members].mean() - conf[members].mean())
    return float(total)


@dataclass(frozen=True)
class ClassScore:
    """Precision, recall and F1 of one class, with its number of true rows."""

    label: str
    support: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class Evaluation:
    """Scores of a model's predictions on labelled rows."""

    rows: int
    accuracy: float
    macro_f1: float
    ece: float
    per_class: list[ClassScore] = field(default_factory=list)
    confused: list[tuple[str, str, int]] = field(default_factory=list)  # (true, predicted, rows), most first

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    true_labels: Sequence[str],
    predicted: Sequence[str],
    confidences: Sequence[float],
    *,
    most_confused: int = 10,
) -> Evaluation:
    """Scores of ``predicted`` against ``true_labels``; macro-F1 averages over the classes in either (scikit-learn)."""
    if not (len(true_labels) == len(predicted) == len(confidences)):
        raise ValueError("true labels, predictions and confidences differ in length")
    if not true_labels:
        raise TrainingDataError("no rows to evaluate")
    labels = sorted(set(true_labels) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        true_labels, predicted, labels=labels, zero_division=0
    )
    per_class = [
        ClassScore(label, int(n), float(p), float(r), float(f))
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    ]
    per_class.sort(key=lambda s: (-s.support, s.label))
    correct = [t == p for t, p in zip(true_labels, predicted, strict=True)]
    errors = Counter((t, p) for t, p in zip(true_labels, predicted, strict=True) if t != p)
    confused = [(t, p, n) for (t, p), n in sorted(errors.items(), key=lambda item: (-item[1], item[0]))]
    return Evaluation(
        rows=len(true_labels),
        accuracy=float(np.mean(correct)),
        macro_f1=float(np.mean(f1)),
        ece=expected_calibration_error(confidences, correct),
        per_class=per_class,
        confused=confused[:most_confused],
    )


@dataclass(frozen=True)
class TriageScore:
    """What a triage policy does to scored rows: the share dispatched without a person, and how right those were."""

    rows: int
    automatic: int
    coverage: float  # automatic / rows
    accuracy_automatic: float | None  # None when nothing was dispatched automatically
    triaged: int


def score_triage(true_labels: Sequence[str], predicted: Sequence[str], automatic: Sequence[bool]) -> TriageScore:
    """Coverage and accuracy of the rows a policy lets through (``automatic``); the rest wait for a person."""
    if not (len(true_labels) == len(predicted) == len(automatic)):
        raise ValueError("true labels, predictions and triage flags differ in length")
    passed = [t == p for t, p, a in zip(true_labels, predicted, automatic, strict=True) if a]
    rows = len(true_labels)
    return TriageScore(
        rows=rows,
        automatic=len(passed),
        coverage=len(passed) / rows if rows else 0.0,
        accuracy_automatic=float(np.mean(passed)) if passed else None,
        triaged=rows - len(passed),
    )


@dataclass(frozen=True)
class Latency:
    """Batch throughput and single-text latency of a classify function."""

    batch_size: int
    batch_reports_per_s: float
    single_p50_ms: float
    single_p99_ms: float
    single_samples: int


def measure_latency(
    classify: Callable[[list[str]], object],
    texts: Sequence[str],
    clock: Callable[[], float],
    *,
    batch_size: int = 1000,
    repeats: int = 3,
    single_samples: int = 200,
) -> Latency:
    """Median batch throughput over ``repeats`` and p50/p99 of one-text calls, timed with ``clock`` (seconds)."""
    if not texts:
        raise TrainingDataError("no texts to time")
    batch = [texts[i % len(texts)] for i in range(batch_size)]
    rates = []
    for _ in range(repeats):
        started = clock()
        classify(batch)
        rates.append(batch_size / max(clock() - started, 1e-9))
    singles = []
    for i in range(single_samples):
        started = clock()
        classify([texts[i % len(texts)]])
        singles.append((clock() - started) * 1000.0)
    return Latency(
        batch_size=batch_size,
        batch_reports_per_s=float(np.median(rates)),
        single_p50_ms=float(np.percentile(singles, 50)),
        single_p99_ms=float(np.percentile(singles, 99)),
        single_samples=single_samples,
    )
