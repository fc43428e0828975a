"""What ``cityloop train`` does with a city's labelled rows, as a function: the benchmark must measure the same path.

1. Classes with fewer than ``min_count`` rows are left out; by default (1) none is. Cross-validated
   on the complement sets' training parts and NYC's (every row scored, a left-out class a miss),
   1 beat or tied 2, 3 and 5 on every set (``docs/CLASSIFIER.md``): the balanced class weights let
   a class of one to three rows be predicted, and a class never learnt is always a miss.
2. A stratified ``holdout`` share is held out; a trial model fitted on the rest is scored on
   it, so the numbers ``train`` prints come from rows no model choice has seen. A class with a
   single row stays in the training part (it cannot be both learnt and tested).
3. The saved model is fitted on every row. Its calibration folds answer each row once as
   unseen data; the triage thresholds are chosen on those out-of-fold answers
   (``thresholds="cv"``, the default) rather than on the small holdout (``thresholds="holdout"``,
   how ``train`` chose them until issue 17; kept to compare).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.model_selection import train_test_split

from classifiers.errors import TrainingDataError
from classifiers.evaluation import Evaluation, evaluate
from classifiers.pipelines import DEFAULT_PIPELINE
from classifiers.text import TextClassifier
from classifiers.trainingdata import LabelledRows, drop_rare_classes
from classifiers.triage import TriagePolicy, choose_thresholds, thresholds_from_out_of_fold

MIN_ROWS = 10
TARGET_PRECISION = 0.9


@dataclass(frozen=True)
class CityModel:
    """The saved model, its triage policy, and how the trial model scored on the held-out rows."""

    model: TextClassifier
    policy: TriagePolicy
    holdout: Evaluation
    dropped: dict[str, int]
    classes: list[str]
    rows: LabelledRows


def holdout_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified row indices (train, held out); every class keeps a row on each side, except a class with a single
    row, which is learnt from and never held out (it cannot be both)."""
    counts = Counter(labels)
    indices = np.arange(len(labels))
    single = np.asarray([counts[label] == 1 for label in labels], dtype=bool)
    rest = indices[~single]
    rest_labels = [labels[i] for i in rest]
    classes = len(set(rest_labels))
    held = max(classes, round(fraction * len(rest)))
    if classes == 0 or len(rest) - held < classes:
        raise TrainingDataError(
            f"{len(labels)} rows are too few to hold out {held} for testing and still train on every one of "
            f"{classes} classes with two or more rows; add rows"
        )
    train, test = train_test_split(rest, test_size=held, stratify=rest_labels, random_state=seed)
    return np.sort(np.concatenate([train, indices[single]])), np.sort(test)


def train_city_model(
    rows: LabelledRows,
    *,
    pipeline: str = DEFAULT_PIPELINE,
    min_count: int = 1,
    holdout: float = 0.2,
    seed: int = 0,
    target_precision: float = TARGET_PRECISION,
    thresholds: Literal["cv", "holdout"] = "cv",
    progress: Callable[[str], None] | None = None,
) -> CityModel:
    """Steps 1-3 of the module doc; :class:`TrainingDataError` when too little is left to train on."""
    say = progress or (lambda _: None)
    rows, dropped = drop_rare_classes(rows, min_count)
    if dropped:
        say(
            f"left out {len(dropped)} classes with fewer than {min_count} rows "
            f"({sum(dropped.values())} rows): {', '.join(sorted(dropped))}"
        )
    classes = sorted(set(rows.labels))
    if len(classes) < 2:
        raise TrainingDataError(f"{len(classes)} class left with at least {min_count} rows; a model needs two or more")
    if len(rows) < MIN_ROWS:
        raise TrainingDataError(f"{len(rows)} usable rows; a model needs at least {MIN_ROWS}")
    say(f"{len(rows)} rows in {len(classes)} classes")
    train_rows, test_rows = holdout_split(rows.labels, holdout, seed)
    texts, labels = np.asarray(rows.texts, dtype=object), np.asarray(rows.labels)
    say(f"fitting {pipeline} on {len(train_rows)} rows, holding out {len(test_rows)}")
    trial = TextClassifier.train(
        list(texts[train_rows]), list(labels[train_rows]), pipeline=pipeline, seed=seed, progress=progress
    )
    held_texts, held_labels = list(texts[test_rows]), list(labels[test_rows])
    answers = trial.predict(held_texts, top_k=1)
    scores = evaluate(held_labels, [a.category for a in answers], [a.confidence for a in answers])
    say(f"refitting on all {len(rows)} rows")
    model = TextClassifier.train(rows.texts, rows.labels, pipeline=pipeline, seed=seed, progress=progress)
    if thresholds == "cv":
        policy = thresholds_from_out_of_fold(model, rows.labels, target_precision=target_precision)
    else:
        policy = choose_thresholds(answers, held_labels, target_precision=target_precision)
    return CityModel(model, policy, scores, dropped, classes, rows)
