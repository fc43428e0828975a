"""The default model's pieces from issue 17: out-of-fold answers, thresholds chosen on them, unknown words."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers import Classification, TextClassifier
from classifiers.citymodel import holdout_split, train_city_model
from classifiers.errors import TrainingDataError
from classifiers.pipelines import DEFAULT_PIPELINE, fit_pipeline
from classifiers.text import OutOfFold, TrainingSummary, _answers, normalise_text
from classifiers.trainingdata import LabelledRows
from classifiers.triage import TriagePolicy, thresholds_from_out_of_fold

TEXTS = {
    "pothole": ["deep pothole in the road", "pothole near school", "road has a big hole", "hole in asphalt"],
    "streetlight": ["street light out", "lamp post dark at night", "streetlight broken", "no light on corner"],
    "graffiti": ["graffiti on the wall", "spray paint tags on bridge", "vandal painted the door", "graffiti again"],
}


def corpus(copies: int = 3) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, examples in TEXTS.items():
        for i in range(copies):
            for text in examples:
                texts.append(f"{text} {'please ' * i}".strip())
                labels.append(label)
    return texts, labels


def test_out_of_fold_answers_cover_every_training_row_with_calibrated_confidences():
    texts, labels = corpus()
    model = TextClassifier.train(texts, labels)
    oof = model.out_of_fold
    assert oof is not None and len(oof.categories) == len(texts) == oof.confidences.shape[0]
    assert set(oof.categories) <= set(model.classes)
    assert np.all((oof.confidences > 1 / len(model.classes) - 1e-9) & (oof.confidences <= 1.0))
    assert np.mean([c == t for c, t in zip(oof.categories, labels, strict=True)]) > 0.8
    assert TextClassifier.train(texts, labels, calibration_folds=1).out_of_fold is None


def test_a_row_no_fold_could_score_is_a_miss_with_confidence_zero():
    scores = np.array([[2.0, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 3.0]])
    oof = _answers(scores, 1.0, ["a", "b", "c"])
    assert oof.categories == ("a", "", "c")
    assert oof.confidences[1] == 0.0
    assert oof.confidences[0] == pytest.approx(np.exp(2) / (np.exp(2) + np.exp(1)))
    assert oof.confidences[2] == pytest.approx(np.exp(3) / (np.exp(3) + 1))


def _with_out_of_fold(categories: list[str], confidences: list[float]) -> TextClassifier:
    texts, labels = corpus(1)
    pipeline = fit_pipeline(DEFAULT_PIPELINE, [normalise_text(t) for t in texts], labels)
    summary = TrainingSummary(DEFAULT_PIPELINE, len(texts), "", 1.0, 5)
    return TextClassifier(pipeline, summary, OutOfFold(tuple(categories), np.asarray(confidences)))


def test_thresholds_are_chosen_on_the_out_of_fold_answers():
    # 40 "a" answers, 0.95 down to 0.56: the 36 most confident right, the last 4 wrong.
    confidences = [(95 - i) / 100 for i in range(40)]
    truth = ["a"] * 36 + ["b"] * 4
    model = _with_out_of_fold(["a"] * 40, confidences)
    policy = thresholds_from_out_of_fold(model, truth, target_precision=0.9, min_support=30)
    assert policy.thresholds["a"] == pytest.approx(0.56)  # 36 right of 40 is 0.9 exactly, down to 0.56
    assert policy.default_threshold == pytest.approx(0.56)
    strict = thresholds_from_out_of_fold(model, truth, target_precision=0.95, min_support=30)
    assert strict.thresholds["a"] == pytest.approx(0.59)  # 36 of 37 = 0.973 at 0.59; 36 of 38 = 0.947 fails


def test_thresholds_from_out_of_fold_refuse_a_model_without_them_or_other_rows():
    texts, labels = corpus(1)
    model = TextClassifier.train(texts, labels, calibration_folds=1)
    with pytest.raises(TrainingDataError, match="out-of-fold"):
        thresholds_from_out_of_fold(model, labels)
    with pytest.raises(TrainingDataError, match="3 true categories for 2"):
        thresholds_from_out_of_fold(_with_out_of_fold(["a", "b"], [0.5, 0.5]), ["a", "b", "c"])


def test_unknown_share_counts_words_missing_from_training_and_skips_digits_and_cjk():
    texts, labels = corpus(1)
    model = TextClassifier.train(texts, labels, calibration_folds=1)
    shares = model.unknown_shares(["deep pothole", "deep mattresses", "zzz qqq", "12 pothole 34", "路灯不亮", "?"])
    assert shares == [0.0, 0.5, 1.0, 0.0, None, None]
    answers = model.predict(["deep mattresses", "路灯不亮"])
    assert [a.unknown_share for a in answers] == [0.5, None]
    # a Chinese report with a greeting around it (the demo's residents write those): 2 unknown of 2 + 4 (8 characters)
    assert model.unknown_shares(["hello 路面有个大坑危险 thanks"]) == [pytest.approx(2 / 6)]


def test_a_model_without_a_word_vocabulary_reports_no_unknown_share():
    texts, labels = corpus(1)
    model = TextClassifier.train(texts, labels, pipeline="chars2-5/logreg-sqrtw", calibration_folds=1)
    assert model.predict(["zzz qqq"])[0].unknown_share is None


@pytest.mark.parametrize(
    ("confidence", "unknown", "limit", "triage"),
    [
        (0.99, 0.5, 0.5, True),  # half the words unknown: a person, however confident
        (0.99, 0.49, 0.5, False),
        (0.99, None, 0.5, False),  # nothing to judge
        (0.99, 1.0, 1.0, False),  # 1.0 turns the check off
        (0.10, 0.0, 0.5, True),  # the confidence rule still applies
    ],
)
def test_policy_sends_mostly_unknown_text_to_a_person(confidence, unknown, limit, triage):
    policy = TriagePolicy(0.25, max_unknown_share=limit)
    answer = Classification("pothole", confidence, (("pothole", confidence),), unknown)
    assert policy.needs_triage(answer) is triage


def test_policy_round_trips_the_unknown_words_limit_and_old_dicts_get_the_default():
    policy = TriagePolicy(0.3, {"a": 0.5}, max_unknown_share=0.7)
    assert TriagePolicy.from_dict(policy.as_dict()) == policy
    assert TriagePolicy.from_dict({"default_threshold": 0.3}).max_unknown_share == 0.5
    with pytest.raises(Exception, match="max_unknown_share"):
        TriagePolicy(0.3, max_unknown_share=1.5)


def test_train_city_model_chooses_thresholds_on_every_row_not_the_holdout():
    texts, labels = corpus(8)  # 32 rows a class: enough out-of-fold answers for a threshold per class
    rows = LabelledRows(texts + ["rare one", "rare two"], labels + ["rare", "rare"], 0)
    city = train_city_model(rows, min_count=5, holdout=0.2)
    assert city.dropped == {"rare": 2} and "rare" not in city.model.classes
    assert city.model.out_of_fold is not None and len(city.model.out_of_fold.categories) == len(texts)
    assert city.policy == thresholds_from_out_of_fold(city.model, city.rows.labels)
    assert set(city.policy.thresholds) == set(TEXTS)
    held = train_city_model(rows, min_count=5, holdout=0.2, thresholds="holdout")
    assert held.holdout.rows == round(0.2 * len(texts))
    assert held.policy.thresholds == {}  # about 6 held-out rows a class: too few for a class of its own


def test_by_default_a_class_with_one_row_is_learnt_and_never_held_out():
    """NYC's time split has many classes with a row or two: a class left out is a miss on every one of its reports,
    so the default learns them all; the single row cannot also be tested, so it stays in the training part."""
    texts, labels = corpus(8)
    rows = LabelledRows([*texts, "lone report of a rare thing"], [*labels, "rare"], 0)
    train, held = holdout_split(rows.labels, 0.2, seed=0)
    assert len(rows) - 1 in train and len(rows) - 1 not in held
    assert sorted([*train, *held]) == list(range(len(rows)))
    assert {rows.labels[i] for i in held} == set(TEXTS), "every class with two or more rows is tested"
    city = train_city_model(rows, holdout=0.2)
    assert city.dropped == {} and "rare" in city.model.classes
    assert city.holdout.rows == round(0.2 * len(texts))
