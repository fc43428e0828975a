"""Compare the candidate pipelines on the NYC 311 time split and a cross-validation of the seed corpus.

Each candidate is trained the way the product trains (``TextClassifier.train``: class
weights, temperature fitted out of fold) and scored on macro-F1, accuracy, ECE (10 bins)
and batch throughput (5,000 distinct report-like texts); one extra row uses scikit-learn's own CalibratedClassifierCV
(sigmoid, 3 folds) around LinearSVC. NYC test rows whose label never occurs in training
are left out (no model can predict them); macro-F1 averages over the test classes seen
in training.

    python -m bench.compare_classifiers [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from bench.bench_classifier import realistic_texts
from bench.nyc311 import NYC_311, time_split
from classifiers.evaluation import evaluate
from classifiers.pipelines import CANDIDATES, text_features
from classifiers.text import TextClassifier, normalise_text, seed_corpus

Predictor = Callable[[Sequence[str]], tuple[list[str], list[float]]]


def product_trainer(name: str) -> Callable[[list[str], list[str]], Predictor]:
    def train(texts: list[str], labels: list[str]) -> Predictor:
        model = TextClassifier.train(texts, labels, pipeline=name)

        def predict(batch: Sequence[str]) -> tuple[list[str], list[float]]:
            answers = model.predict(batch, top_k=1)
            return [a.category for a in answers], [a.confidence for a in answers]

        return predict

    return train


def _sigmoid_svc_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("features", text_features()),
            (
                "model",
                CalibratedClassifierCV(
                    LinearSVC(C=1.0, class_weight="balanced"), method="sigmoid", cv=3, ensemble=False
                ),
            ),
        ]
    )


def sklearn_sigmoid_svc(texts: list[str], labels: list[str]) -> Predictor:
    """LinearSVC in CalibratedClassifierCV(sigmoid, cv=3); classes with fewer than 3 rows cannot take part."""
    counts = Counter(labels)
    kept = [(normalise_text(t), y) for t, y in zip(texts, labels, strict=True) if counts[y] >= 3]
    with threadpool_limits(limits=1, user_api="blas"):  # as TextClassifier.train does
        model = _sigmoid_svc_pipeline().fit([t for t, _ in kept], [y for _, y in kept])
    classes = np.asarray(model.classes_)

    def predict(batch: Sequence[str]) -> tuple[list[str], list[float]]:
        probabilities = model.predict_proba([normalise_text(t) for t in batch])
        best = probabilities.argmax(axis=1)
        return list(classes[best]), list(probabilities[np.arange(len(batch)), best])

    return predict


def trainers() -> dict[str, Callable[[list[str], list[str]], Predictor]]:
    result = {name: product_trainer(name) for name in CANDIDATES}
    result["words+char_wb1-4/linearsvc+sklearn-sigmoid"] = sklearn_sigmoid_svc
    return result


def throughput(predict: Predictor, texts: Sequence[str], repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    return float(np.median(rates))


def nyc_scores(train_fn: Callable[[list[str], list[str]], Predictor], label_column: str) -> dict[str, float]:
    train, test = time_split(label_column)
    known = set(train.labels)
    rows = [(t, y) for t, y in zip(test.texts, test.labels, strict=True) if y in known]
    texts, truth = [t for t, _ in rows], [y for _, y in rows]
    started = time.perf_counter()
    predict = train_fn(train.texts, train.labels)
    fit_s = time.perf_counter() - started
    predicted, confidences = predict(texts)
    scores = evaluate(truth, predicted, confidences)
    return {
        "accuracy": scores.accuracy,
        "macro_f1": scores.macro_f1,
        "ece": scores.ece,
        "fit_s": fit_s,
        # distinct texts: NYC descriptors repeat so much that TextClassifier's batch dedup would hide the cost
        "reports_per_s": throughput(predict, realistic_texts(5000, seed=3, distinct=True)),
        "test_rows": len(texts),
        "test_rows_unseen_label": len(test) - len(texts),
    }


def seed_cv_scores(train_fn: Callable[[list[str], list[str]], Predictor], folds: int = 5) -> dict[str, float]:
    texts, labels = seed_corpus()
    text_array, label_array = np.asarray(texts, dtype=object), np.asarray(labels)
    truth: list[str] = []
    predicted: list[str] = []
    confidences: list[float] = []
    for train_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=0).split(text_array, label_array):
        predict = train_fn(list(text_array[train_rows]), list(label_array[train_rows]))
        p, c = predict(list(text_array[test_rows]))
        truth += list(label_array[test_rows])
        predicted += p
        confidences += c
    scores = evaluate(truth, predicted, confidences)
    return {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "ece": scores.ece}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="Write the results as JSON here.")
    parser.add_argument("--only", nargs="*", help="Candidate names to run (default: all).")
    args = parser.parse_args()
    if not NYC_311.is_dir():
        raise SystemExit(f"no NYC 311 data at {NYC_311}")
    warnings.filterwarnings("ignore", category=UserWarning)
    results = {}
    header = (
        f"{'candidate':40} {'nyc type F1':>11} {'acc':>6} {'ECE':>6} {'agency F1':>9} {'acc':>6} {'ECE':>6} "
        f"{'seed F1':>7} {'acc':>6} {'ECE':>6} {'fit s':>6} {'rep/s':>8}"
    )
    print(header)
    for name, train_fn in trainers().items():
        if args.only and name not in args.only:
            continue
        kind = nyc_scores(train_fn, "complaint type")
        agency = nyc_scores(train_fn, "agency")
        seed = seed_cv_scores(train_fn)
        results[name] = {"nyc_complaint_type": kind, "nyc_agency": agency, "seed_cv": seed}
        print(
            f"{name:40} {kind['macro_f1']:11.3f} {kind['accuracy']:6.3f} {kind['ece']:6.3f} "
            f"{agency['macro_f1']:9.3f} {agency['accuracy']:6.3f} {agency['ece']:6.3f} "
            f"{seed['macro_f1']:7.3f} {seed['accuracy']:6.3f} {seed['ece']:6.3f} "
            f"{kind['fit_s']:6.1f} {kind['reports_per_s']:8.0f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
