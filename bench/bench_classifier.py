"""Text classifier throughput: batches of realistic report texts against one-text calls in a loop.

The texts are built from the seed corpus the way residents write: one or two reports
run together, a street number, sometimes markup or shouting, so most are not texts the
model was trained on. Each figure is the median of ``--repeats`` runs (at least 5), and
the baseline (single-text ``predict`` calls in a loop) is measured in the same run, as is
the same model with scikit-learn's ``char_wb`` analyzer in place of the numpy n-gram
counter. A breakdown of the largest batch by stage shows where the time goes.

    python -m bench.bench_classifier [--sizes 1000 10000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info

from classifiers.calibration import decision_scores, softmax
from classifiers.text import TextClassifier, normalise_text, seed_classifier, seed_corpus

REFERENCE_PIPELINE = "char_wb2-5/logreg"
STREETS = ["Kanaalstraat", "Lindenlaan", "Molenweg", "Havenweg", "Brugweg", "Kerkstraat", "Main St", "Calle Mayor"]


def realistic_texts(count: int, seed: int = 1, distinct: bool = False) -> list[str]:
    """Reports as residents send them, built from the seed corpus; ``distinct``: no two alike once normalised."""
    rng = random.Random(seed)
    corpus, _ = seed_corpus()
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < count:
        text = rng.choice(corpus)
        roll = rng.random()
        if roll < 0.25:
            text = f"{text}. {rng.choice(corpus)}"
        elif roll < 0.45:
            text = f"{text} near {rng.randint(1, 240)} {rng.choice(STREETS)}"
        elif roll < 0.55:
            text = text.upper()
        elif roll < 0.6:
            text = f"<p>{text}</p><br/>"
        if distinct:
            key = normalise_text(text)
            if key in seen:
                continue
            seen.add(key)
        texts.append(text)
    return texts


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stage_breakdown(model: TextClassifier, texts: list[str], repeats: int) -> dict[str, float]:
    """Median seconds of each stage of one batch."""
    normalised = [normalise_text(t) for t in texts]
    features = model.pipeline[:-1]
    matrix = features.transform(normalised)
    final = model.pipeline[-1]
    scores = decision_scores(model.pipeline, normalised)
    probabilities = softmax(scores, model.summary.temperature)
    return {
        "normalise": median_seconds(lambda: [normalise_text(t) for t in texts], repeats),
        "vectorise": median_seconds(lambda: features.transform(normalised), repeats),
        "linear scores": median_seconds(lambda: final.decision_function(matrix), repeats),
        "softmax": median_seconds(lambda: softmax(scores, model.summary.temperature), repeats),
        "top-3 + answers": median_seconds(lambda: _top3(model, probabilities), repeats),
    }


def _top3(model: TextClassifier, probabilities: np.ndarray) -> None:
    # predict() minus the probabilities: rank and build the answers
    order = np.argsort(-probabilities, axis=1)[:, :3]
    [tuple(model.classes[j] for j in row) for row in order.tolist()]


def run(sizes: list[int], repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    model = seed_classifier()
    fit_s = time.perf_counter() - started
    texts = realistic_texts(max(sizes))
    model.predict(texts[:100])  # warm up
    single_batch = texts[:1000]
    loop_s = median_seconds(lambda: [model.predict([t]) for t in single_batch], repeats)
    baseline = len(single_batch) / loop_s
    distinct = realistic_texts(max(sizes), seed=2, distinct=True)
    rows = []
    for kind, pool in (("realistic", texts), ("all distinct", distinct)):
        for size in sizes:
            batch = pool[:size]
            seconds = median_seconds(lambda batch=batch: model.predict(batch), repeats)
            rows.append(
                {
                    "texts": kind,
                    "batch": size,
                    "distinct_share": len({normalise_text(t) for t in batch}) / size,
                    "seconds": seconds,
                    "reports_per_s": size / seconds,
                    "vs_loop": size / seconds / baseline,
                }
            )
    stages = stage_breakdown(model, distinct, repeats)
    # The same n-grams through scikit-learn's own char_wb analyzer: what the numpy counter replaced.
    texts_, labels_ = seed_corpus()
    reference = TextClassifier.train(texts_, labels_, pipeline=REFERENCE_PIPELINE)
    for size in sizes:
        batch = distinct[:size]
        seconds = median_seconds(lambda batch=batch: reference.predict(batch), repeats)
        rows.append(
            {
                "texts": f"all distinct, {REFERENCE_PIPELINE}",
                "batch": size,
                "distinct_share": 1.0,
                "seconds": seconds,
                "reports_per_s": size / seconds,
                "vs_loop": size / seconds / baseline,
            }
        )
    return {
        "pipeline": model.summary.pipeline,
        "classes": len(model.classes),
        "train_seconds": fit_s,
        "mean_text_chars": float(np.mean([len(t) for t in texts])),
        "repeats": repeats,
        "baseline_single_calls_per_s": baseline,
        "batches": rows,
        "stages_seconds": stages,
        "machine": {
            "python": platform.python_version(),
            "blas": [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="Write the results as JSON here.")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("use at least 5 repeats: the figures are medians")
    result = run(args.sizes, args.repeats)
    print(
        f"{result['pipeline']}, {result['classes']} classes, texts of {result['mean_text_chars']:.0f} characters "
        f"on average; medians of {result['repeats']} runs"
    )
    print(f"{'calls':>28} {'texts':>36} {'distinct':>8} {'reports/s':>11} {'vs loop':>8}")
    loop = result["baseline_single_calls_per_s"]
    print(f"{'one text per call (loop)':>28} {'realistic':>36} {'':>8} {loop:11,.0f} {1:8.1f}x")
    for row in result["batches"]:
        print(
            f"{'batch of ' + format(row['batch'], ','):>28} {row['texts']:>36} {row['distinct_share']:8.0%} "
            f"{row['reports_per_s']:11,.0f} {row['vs_loop']:8.1f}x"
        )
    total = sum(result["stages_seconds"].values())
    print(f"\nwhere a batch of {max(args.sizes):,} distinct texts spends its time:")
    for stage, seconds in result["stages_seconds"].items():
        print(f"  {stage:18} {seconds * 1000:8.1f} ms  {seconds / total:5.1%}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
