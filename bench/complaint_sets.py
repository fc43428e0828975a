"""CityLoop's `cityloop train` path against a plain baseline and the pre-issue-17 model, on real complaint sets.

For each set in ``--data-dir`` (``<name>/data.csv`` with columns ``text,label``; see the
SOURCES.md there) one fixed split, the same rows for all three models in the same run:

* classes with one row go to the training part (they cannot be both learnt and tested);
  the other rows are split 80/20, stratified, seed 0;
* **baseline**: scikit-learn's TfidfVectorizer word 1-2-grams + TfidfVectorizer char_wb
  2-5-grams (a FeatureUnion; lowercase, no sublinear tf, all other settings default) and
  LogisticRegression with default settings (C=1, lbfgs, no class weights; max_iter 1000 so that
  it converges). It has no triage policy of its own, so it gets one global threshold chosen
  on its 5-fold out-of-fold probabilities on the training part, at the same target precision;
* **today**: the default of commit b733b23 as ``cityloop train`` ran it then: pipeline
  chars2-5/logreg-sqrtw, min-count 5, thresholds chosen on a 20% holdout of the training part
  (today's text normalisation, which differs only on escaped line breaks and invisible characters);
* **cityloop**: ``cityloop train``'s path now (``classifiers.citymodel.train_city_model``
  with its defaults: min-count 1, holdout 0.2 for the printed scores, thresholds on the
  out-of-fold answers of the final model).

Every test row is scored: a class a model dropped (``--min-count``) or never saw is a miss.
macro-F1 is scikit-learn's over the classes that are true labels or predictions. Auto-dispatch
share and accuracy apply each model's triage policy (target precision 0.9) to the test rows;
"share at 0.9" is the share of test rows, most confident first, that could be dispatched with
accuracy 0.9 (the same precision for every model); "unfamiliar" counts test rows the policy
sent to a person because most of their words were unknown to the model.
Training time is the median of ``--repeats`` runs of the whole path (trial, refit,
thresholds); size is the model file ``save_model`` writes; speed is texts per second
classified in batches of 1,000.

With ``--nyc`` a fourth, easy set: NYC 311 descriptor + location type -> complaint type,
2,000 rows sampled from the 2011-2024 extracts to train, 2,000 from 2026 to test (a time split).

    OMP_NUM_THREADS=1 python -m bench.complaint_sets [--data-dir /work/datasets] [--nyc] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline
from threadpoolctl import threadpool_limits

from classifiers.citymodel import TARGET_PRECISION, train_city_model
from classifiers.evaluation import evaluate, score_triage
from classifiers.modelfile import save_model
from classifiers.pipelines import DEFAULT_PIPELINE
from classifiers.text import Classification, TextClassifier, TrainingSummary
from classifiers.trainingdata import LabelledRows, read_labelled_csv
from classifiers.triage import TriagePolicy, choose_thresholds

SETS = ("kursk_ru", "nhs_feedback_en", "cycling_de")
TODAY = "chars2-5/logreg-sqrtw"
Answerer = Callable[[Sequence[str]], list[Classification]]


def split(labels: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train rows, test rows, singleton classes): 80/20 stratified over classes with two or more rows."""
    counts = Counter(labels)
    singletons = sorted(c for c, n in counts.items() if n < 2)
    rows = np.arange(len(labels))
    alone = np.array([counts[label] < 2 for label in labels])
    train, test = train_test_split(
        rows[~alone], test_size=0.2, stratify=[labels[i] for i in rows[~alone]], random_state=seed
    )
    return np.sort(np.concatenate([train, rows[alone]])), np.sort(test), singletons


def baseline_pipeline() -> Pipeline:
    """The plain baseline (module doc)."""
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2))),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5))),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(max_iter=1000))])


def _baseline_answers(pipeline: Pipeline, texts: Sequence[str]) -> list[Classification]:
    probabilities = pipeline.predict_proba(list(texts))
    best = probabilities.argmax(axis=1)
    classes = [str(c) for c in pipeline.classes_]
    return [
        Classification(classes[j], float(p[j]), ((classes[j], float(p[j])),))
        for j, p in zip(best.tolist(), probabilities, strict=True)
    ]


def train_baseline(rows: LabelledRows) -> tuple[Answerer, TriagePolicy, TextClassifier]:
    texts, labels = np.asarray(rows.texts, dtype=object), np.asarray(rows.labels)
    oof: list[Classification | None] = [None] * len(labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(texts, labels))
    for fit_rows, held in folds:
        fold = baseline_pipeline().fit(list(texts[fit_rows]), labels[fit_rows])
        for i, answer in zip(held, _baseline_answers(fold, texts[held]), strict=True):
            oof[i] = answer
    answers = [a for a in oof if a is not None]
    policy = choose_thresholds(answers, list(labels), target_precision=TARGET_PRECISION, min_support=len(labels) + 1)
    pipeline = baseline_pipeline().fit(list(texts), labels)
    wrapped = TextClassifier(pipeline, TrainingSummary("baseline", len(labels), "", 1.0, 0))
    return (lambda batch: _baseline_answers(pipeline, batch)), policy, wrapped


def train_product(
    rows: LabelledRows, pipeline: str, thresholds: str, min_count: int
) -> tuple[Answerer, TriagePolicy, TextClassifier]:
    city = train_city_model(rows, pipeline=pipeline, thresholds=thresholds, min_count=min_count)  # type: ignore[arg-type]
    return (lambda batch: city.model.predict(batch, top_k=1)), city.policy, city.model


def measure(
    trainer: Callable[[LabelledRows], tuple[Answerer, TriagePolicy, TextClassifier]],
    train: LabelledRows,
    test: LabelledRows,
    repeats: int,
) -> dict[str, Any]:
    """Scores on every test row, triage under the model's policy, median training time, file size, speed."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer, policy, model = trainer(train)
        seconds.append(time.perf_counter() - started)
    answers = answer(test.texts)
    predicted = [a.category for a in answers]
    scores = evaluate(test.labels, predicted, [a.confidence for a in answers])
    correct = [t == p for t, p in zip(test.labels, predicted, strict=True)]
    triage = score_triage(test.labels, predicted, [not policy.needs_triage(a) for a in answers])
    size = _file_size(model)
    # Distinct texts (a number appended): the model scores a repeated text only once.
    batch = [f"{test.texts[i % len(test.texts)]} {i}" for i in range(1000)]
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        answer(batch)
        rates.append(len(batch) / (time.perf_counter() - started))
    return {
        "macro_f1": scores.macro_f1,
        "accuracy": scores.accuracy,
        "ece": scores.ece,
        "auto_share": triage.coverage,
        "auto_accuracy": triage.accuracy_automatic,
        "share_at_target": share_at_precision([a.confidence for a in answers], correct, TARGET_PRECISION),
        "unfamiliar": sum(policy.is_unfamiliar(a) for a in answers),
        "train_s": statistics.median(seconds),
        "model_kib": size / 1024,
        "texts_per_s": statistics.median(rates),
        "classes_learnt": len(model.classes),
    }


def share_at_precision(confidences: Sequence[float], correct: Sequence[bool], target: float) -> float:
    """The largest share of rows, most confident first, whose accuracy is still at least ``target``.

    The same precision for every model, so it compares how well confidences rank right answers
    first; a policy's thresholds, chosen before the test, land near it but not on it.
    """
    order = np.argsort(-np.asarray(confidences, dtype=np.float64), kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    ok = np.flatnonzero(hits / np.arange(1, len(order) + 1) >= target)
    return float((ok.max() + 1) / len(order)) if ok.size else 0.0


def _file_size(model: TextClassifier) -> int:
    """Bytes of the model file; for the baseline (float64 features, which a CityLoop model file refuses)
    the skops pipeline alone, compressed the same way."""
    if model.summary.pipeline == "baseline":
        return len(sio.dumps(model.pipeline, compression=zipfile.ZIP_DEFLATED))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.cityloop"
        save_model(model, path, created_at=datetime.now(UTC))
        return path.stat().st_size


def load_sets(data_dir: Path, names: Sequence[str]) -> dict[str, tuple[LabelledRows, LabelledRows, list[str]]]:
    sets = {}
    for name in names:
        rows = read_labelled_csv(data_dir / name / "data.csv", ["text"], "label")
        train, test, singletons = split(rows.labels)
        sets[name] = (_subset(rows, train), _subset(rows, test), singletons)
    return sets


def nyc_set(seed: int = 0, size: int = 2000) -> tuple[LabelledRows, LabelledRows, list[str]]:
    from bench.nyc311 import time_split

    train, test = time_split("complaint type")
    rng = np.random.default_rng(seed)
    return (
        _subset(train, rng.choice(len(train), min(size, len(train)), replace=False)),
        _subset(test, rng.choice(len(test), min(size, len(test)), replace=False)),
        [],
    )


def _subset(rows: LabelledRows, indices: Sequence[int]) -> LabelledRows:
    return LabelledRows([rows.texts[i] for i in indices], [rows.labels[i] for i in indices], 0)


MODELS: dict[str, Callable[[LabelledRows], tuple[Answerer, TriagePolicy, TextClassifier]]] = {
    "baseline": train_baseline,
    "today": lambda rows: train_product(rows, TODAY, "holdout", 5),
    "cityloop": lambda rows: train_product(rows, DEFAULT_PIPELINE, "cv", 1),
}


def run(sets: dict[str, tuple[LabelledRows, LabelledRows, list[str]]], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with threadpool_limits(limits=1):
        for name, (train, test, singletons) in sets.items():
            row: dict[str, Any] = {
                "train_rows": len(train),
                "test_rows": len(test),
                "classes": len(set(train.labels) | set(test.labels)),
                "singleton_classes_in_training_only": singletons,
            }
            for model, trainer in MODELS.items():
                row[model] = measure(trainer, train, test, repeats)
            base, today, ours = row["baseline"], row["today"], row["cityloop"]
            row["macro_f1_vs_baseline"] = ours["macro_f1"] / base["macro_f1"] if base["macro_f1"] else None
            row["auto_share_vs_today"] = ours["auto_share"] / today["auto_share"] if today["auto_share"] else None
            row["share_at_target_vs_today"] = (
                ours["share_at_target"] / today["share_at_target"] if today["share_at_target"] else None
            )
            results[name] = row
    return results


def _print(results: dict[str, Any]) -> None:
    fields = [
        ("macro-F1", "macro_f1", "{:.3f}"),
        ("accuracy", "accuracy", "{:.3f}"),
        ("ECE", "ece", "{:.3f}"),
        ("auto share", "auto_share", "{:.1%}"),
        ("auto accuracy", "auto_accuracy", "{:.3f}"),
        ("share at 0.9", "share_at_target", "{:.1%}"),
        ("unfamiliar", "unfamiliar", "{:d}"),
        ("train s (median)", "train_s", "{:.1f}"),
        ("model KiB", "model_kib", "{:.0f}"),
        ("texts/s", "texts_per_s", "{:,.0f}"),
    ]
    for name, row in results.items():
        print(
            f"\n{name}: {row['train_rows']} train / {row['test_rows']} test rows, {row['classes']} classes"
            + (
                f" (in training only: {', '.join(row['singleton_classes_in_training_only'])})"
                if row["singleton_classes_in_training_only"]
                else ""
            )
        )
        print(f"  {'':18}{'baseline':>12}{'today':>12}{'cityloop':>12}")
        for label, key, fmt in fields:
            cells = [row[m][key] for m in MODELS]
            print(f"  {label:18}" + "".join(f"{'n/a' if v is None else fmt.format(v):>12}" for v in cells))
        ratios = [row[k] for k in ("macro_f1_vs_baseline", "auto_share_vs_today", "share_at_target_vs_today")]
        shown = ["n/a" if r is None else f"{r:.2f}x" for r in ratios]
        print(
            f"  cityloop / baseline macro-F1 {shown[0]}; cityloop / today: auto share {shown[1]}, "
            f"share at 0.9 {shown[2]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/datasets"))
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--nyc", action="store_true", help="add the NYC 311 time split (2,000 + 2,000 rows)")
    parser.add_argument("--repeats", type=int, default=3, help="training runs per model (median time)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sets = load_sets(args.data_dir, args.sets)
    if args.nyc:
        sets["nyc311_en"] = nyc_set()
    results = run(sets, args.repeats)
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
