"""Calibrated confidences: temperature scaling of a linear model's scores, fitted out of fold.

A model's raw scores are over- or under-confident depending on the regularisation and
the class weights used against imbalance. One temperature ``T`` per model, chosen to
minimise the log loss of ``softmax(scores / T)`` on predictions the model made for rows
it had not seen (k-fold), fixes the scale without changing the ranking, so the top-3
stay the same and accuracy is untouched (Guo et al., "On Calibration of Modern Neural
Networks", 2017, section 4.2).

Rare classes are allowed: a fold whose training part lacks a class simply does not
score it, and its rows of that class are left out of the fit (no temperature could
make that prediction right).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline


def decision_scores(pipeline: Pipeline, texts: Sequence[str]) -> np.ndarray:
    """One score per class and text (shape ``(n, classes)``); larger means more likely."""
    final = pipeline.steps[-1][1]
    if hasattr(final, "decision_function"):
        scores = np.asarray(pipeline.decision_function(texts), dtype=np.float64)
    else:
        scores = np.asarray(pipeline.predict_log_proba(texts), dtype=np.float64)
    if scores.ndim == 1:  # two classes: the score is for the second one
        scores = np.column_stack([np.zeros_like(scores), scores])
    return scores


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``."""
    scaled = scores / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


def out_of_fold_scores(
    fit: Callable[[list[str], list[str]], Pipeline],
    texts: Sequence[str],
    labels: Sequence[str],
    classes: Sequence[str],
    folds: int,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Scores for every row from a model that did not see it; ``-inf`` where a fold lacked the class."""
    label_array = np.asarray(labels)
    text_array = np.asarray(texts, dtype=object)
    index = {c: i for i, c in enumerate(classes)}
    result = np.full((len(texts), len(classes)), -np.inf)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Classes smaller than the number of folds are expected in real city data.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(text_array, label_array))
    for fold, (train_rows, test_rows) in enumerate(splits, start=1):
        if progress:
            progress(f"calibration fold {fold}/{folds}: fitting on {len(train_rows)} rows")
        if len(set(label_array[train_rows])) < 2:
            continue
        pipeline = fit(list(text_array[train_rows]), list(label_array[train_rows]))
        columns = [index[str(c)] for c in pipeline.classes_]
        result[np.ix_(test_rows, columns)] = decision_scores(pipeline, list(text_array[test_rows]))
    return result


def fit_temperature(scores: np.ndarray, true_columns: np.ndarray) -> float:
    """The temperature minimising the mean log loss; rows whose true class has no score are ignored."""
    rows = np.isfinite(scores[np.arange(len(scores)), true_columns]) & np.isfinite(scores).any(axis=1)
    if not rows.any():
        return 1.0
    scores, true_columns = scores[rows], true_columns[rows]
    true_scores = scores[np.arange(len(scores)), true_columns]

    def log_loss(log_t: float) -> float:
        t = float(np.exp(log_t))
        return float(np.mean(logsumexp(scores / t, axis=1) - true_scores / t))

    best = minimize_scalar(log_loss, bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))
