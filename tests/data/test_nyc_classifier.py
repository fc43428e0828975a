"""The text model on real city data: NYC 311, trained on 2011-2024 extracts, tested on the 2026 ones.

The text is the request's descriptor joined with its location type (``Loud Music/Party |
Residential Building/House``); the model predicts the complaint type, and separately the
agency. The baseline, computed in the same run, is a lookup: for each normalised text
seen in training its most frequent label (ties by name), otherwise the most frequent
label overall.

Unseen classes: 2026 rows whose label never occurs in the training extracts cannot be
predicted by any model trained on them; they are left out of both scores (their number
is printed). Accuracy is over the remaining rows; macro-F1 averages F1 over the classes
of those rows (the test classes that appear in training), so a class the model predicts
that is not among them still costs recall of the true class.

Calibration uses 3 folds instead of the default 5 to keep the test short: the folds only
set the temperature, which does not change the ranking, so accuracy and F1 are the same.

The data lives beside the repository in ../shared/data (public NYC Open Data, not part of
the product); see SOURCE.txt there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from classifiers.text import TextClassifier, normalise_text
from classifiers.trainingdata import LabelledRows, concat, read_labelled_csv
from tests.shareddata import needs

NYC_311 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyc" / "311"
TEXT_COLUMNS = ("descriptor", "location type")

pytestmark = [
    pytest.mark.slow,
    needs(NYC_311),
]


def load(label_column: str) -> tuple[LabelledRows, LabelledRows]:
    files = sorted(NYC_311.glob("nyc311_*.csv"))
    older = [f for f in files if int(f.name[7:11]) <= 2024]
    newest = [f for f in files if int(f.name[7:11]) >= 2026]
    assert len(older) == 7 and len(newest) == 2, [f.name for f in files]
    train = concat(read_labelled_csv(f, TEXT_COLUMNS, label_column) for f in older)
    test = concat(read_labelled_csv(f, TEXT_COLUMNS, label_column) for f in newest)
    return train, test


def majority_lookup(train: LabelledRows) -> tuple[dict[str, str], str]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for text, label in zip(train.texts, train.labels, strict=True):
        counts[normalise_text(text)][label] += 1
    table = {key: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for key, c in counts.items()}
    overall = min(Counter(train.labels).items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return table, overall


def scores(truth: list[str], predicted: list[str]) -> tuple[float, float]:
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
    macro_f1 = f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)
    return accuracy, float(macro_f1)


@pytest.mark.parametrize("label_column", ["complaint type", "agency"])
def test_model_is_not_worse_than_the_majority_lookup_on_a_time_split(label_column):
    """On 2026 requests, the model trained on 2011-2024 matches or beats the lookup on accuracy and macro-F1."""
    train, test = load(label_column)
    known = set(train.labels)
    kept = [(t, y) for t, y in zip(test.texts, test.labels, strict=True) if y in known]
    texts, truth = [t for t, _ in kept], [y for _, y in kept]

    table, overall = majority_lookup(train)
    baseline = [table.get(normalise_text(t), overall) for t in texts]
    model = TextClassifier.train(train.texts, train.labels, calibration_folds=3)
    predicted = [answer.category for answer in model.predict(texts, top_k=1)]

    model_accuracy, model_f1 = scores(truth, predicted)
    base_accuracy, base_f1 = scores(truth, baseline)
    unseen_texts = sum(normalise_text(t) not in table for t in texts)
    print(
        f"\nNYC 311 {label_column}: train {len(train)} rows / {len(known)} classes (2011-2024); "
        f"test {len(truth)} rows of {len(test)} (2026; {len(test) - len(truth)} left out, label unseen in training; "
        f"{unseen_texts} with a text unseen in training)\n"
        f"  model    accuracy {model_accuracy:.4f}  macro-F1 {model_f1:.4f}\n"
        f"  baseline accuracy {base_accuracy:.4f}  macro-F1 {base_f1:.4f}"
    )
    assert model_accuracy >= base_accuracy
    assert model_f1 >= base_f1
