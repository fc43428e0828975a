"""How the seed model (the worker's model when no --model is given) treats text unlike its seed corpus.

The seed corpus is the demo city's few hundred reports in 15 categories (mostly English). An unseen city's
reports are mostly about other things, in other words: the safe answer is a person, not a
confident guess. For each kind of text this prints the share the worker would send to
triage with the policy it uses for the seed model (threshold 0.25, the default setting) with
and without the unknown-words check (``TriagePolicy.max_unknown_share``), and what the
answers were.

* NYC 311 2026 report titles, "complaint type: descriptor" (each distinct title once; NYC's
  categories only partly overlap the seed's, and its wording differs);
* the complaint sets in ``--data-dir`` (Russian, English, German);
* the seed corpus itself, as the control (familiar text should still be dispatched).

    OMP_NUM_THREADS=1 python -m bench.zero_shot [--data-dir /work/datasets] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench.nyc311 import extracts
from classifiers.text import seed_classifier, seed_corpus
from classifiers.trainingdata import read_labelled_csv
from classifiers.triage import TriagePolicy

EXAMPLES = (
    "5 abandoned mattresses",
    "Abandoned mattress on the sidewalk",
    "HEAT/HOT WATER: APARTMENT ONLY",
    "Noise - Residential: Loud Music/Party",
    "Street Condition: Pothole",
    "Illegal Parking: Blocked Hydrant",
    "huge pothole on the main road",
)


def nyc_titles() -> list[str]:
    """Distinct "complaint type: descriptor" titles of the 2026 NYC extracts."""
    titles: set[str] = set()
    for path in extracts()[1]:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                kind, descriptor = (row.get("complaint_type") or "").strip(), (row.get("descriptor") or "").strip()
                if kind:
                    titles.add(f"{kind}: {descriptor}" if descriptor else kind)
    return sorted(titles)


def triaged(texts: Sequence[str]) -> dict[str, Any]:
    model = seed_classifier()
    answers = model.predict(list(texts), top_k=1)
    with_check, confidence_only = TriagePolicy(0.25), TriagePolicy(0.25, max_unknown_share=1.0)
    return {
        "texts": len(texts),
        "triaged_with_unknown_words_check": sum(with_check.needs_triage(a) for a in answers) / len(answers),
        "triaged_on_confidence_only": sum(confidence_only.needs_triage(a) for a in answers) / len(answers),
        "median_confidence": sorted(a.confidence for a in answers)[len(answers) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/datasets"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with threadpool_limits(limits=1):
        results["nyc311_2026_titles"] = triaged(nyc_titles())
        for data in sorted(args.data_dir.glob("*/data.csv")):
            results[data.parent.name] = triaged(read_labelled_csv(data, ["text"], "label").texts)
        results["seed_corpus (control)"] = triaged(seed_corpus()[0])
        model, policy = seed_classifier(), TriagePolicy(0.25)
        examples = []
        for text, answer in zip(EXAMPLES, model.predict(list(EXAMPLES), top_k=1), strict=True):
            examples.append(
                {
                    "text": text,
                    "category": answer.category,
                    "confidence": answer.confidence,
                    "unknown_share": answer.unknown_share,
                    "to_a_person": policy.needs_triage(answer),
                }
            )
    print(f"{'texts':28}{'rows':>7}{'triaged (words check)':>24}{'on confidence only':>20}{'median conf':>13}")
    for name, r in results.items():
        print(
            f"{name:28}{r['texts']:7d}{r['triaged_with_unknown_words_check']:24.1%}"
            f"{r['triaged_on_confidence_only']:20.1%}{r['median_confidence']:13.2f}"
        )
    print()
    for e in examples:
        print(
            f"{e['text']!r:42} -> {e['category']} {e['confidence']:.2f}, unknown words {e['unknown_share']}, "
            f"{'to a person' if e['to_a_person'] else 'dispatched'}"
        )
    if args.json:
        args.json.write_text(json.dumps({"sets": results, "examples": examples}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
