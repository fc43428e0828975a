"""Calibrated confidences: probabilities in [0, 1], ranked top-k, and a temperature fitted to the data."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers import seed_classifier
from classifiers.calibration import fit_temperature, softmax
from classifiers.evaluation import evaluate, expected_calibration_error


def test_confidences_are_probabilities_and_top_is_sorted():
    """Every confidence lies in [0, 1], the top-3 are distinct and sorted, and the first is the category."""
    texts = ["huge hole in the street", "música alta toda la noche", "垃圾没人收", "", "<b>???</b>"]
    for answer in seed_classifier().predict(texts):
        scores = [score for _, score in answer.top]
        assert len(answer.top) == 3 and len({c for c, _ in answer.top}) == 3
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert answer.top[0] == (answer.category, answer.confidence)
        assert sum(scores) <= 1.0 + 1e-3


def test_probabilities_sum_to_one_over_all_classes():
    """The calibrated distribution over every class sums to one for each text."""
    probabilities = seed_classifier().probabilities(["tree on the road", "noise"])
    assert probabilities.shape == (2, len(seed_classifier().classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)


def test_top_k_larger_than_the_classes_lists_every_class():
    """Asking for more runners-up than there are classes returns all classes, ranked."""
    answer = seed_classifier().predict(["broken street light"], top_k=100)[0]
    assert len(answer.top) == len(seed_classifier().classes)


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    """Labels drawn from softmax(scores / 2) give a fitted temperature close to 2."""
    rng = np.random.default_rng(7)
    scores = rng.normal(0, 3, size=(20000, 4))
    probabilities = softmax(scores, 2.0)
    labels = np.array([rng.choice(4, p=row) for row in probabilities])
    assert fit_temperature(scores, labels) == pytest.approx(2.0, rel=0.05)


def test_fit_temperature_ignores_rows_whose_class_no_fold_could_score():
    """A row whose true class had no score (-inf) does not drag the temperature to infinity."""
    scores = np.array([[2.0, 0.0, -np.inf], [0.0, 2.0, -np.inf], [1.0, 0.0, -np.inf]])
    temperature = fit_temperature(scores, np.array([0, 1, 2]))
    assert np.isfinite(temperature) and temperature < 10


def test_temperature_does_not_change_the_ranking():
    """Scaling by a temperature keeps each row's order, so accuracy is untouched by calibration."""
    scores = np.random.default_rng(1).normal(size=(50, 6))
    assert (softmax(scores, 0.3).argmax(axis=1) == softmax(scores, 5.0).argmax(axis=1)).all()


def test_expected_calibration_error_on_a_hand_made_table():
    """Bins (0.9,1]: 2 rows, accuracy .5, confidence .95; (0.6,0.7]: 2 rows, 1 vs .65; (0.1,0.2]: 1 row, 0 vs .15.

    ECE = 2/5*.45 + 2/5*.35 + 1/5*.15 = 0.35.
    """
    assert expected_calibration_error([0.95, 0.95, 0.65, 0.65, 0.15], [True, False, True, True, False]) == (
        pytest.approx(0.35)
    )


def test_expected_calibration_error_puts_an_edge_in_the_bin_it_closes():
    """0.7 belongs to (0.6, 0.7] and 0.3 to (0.2, 0.3], not to the next bins up (float edges notwithstanding)."""
    # 0.7 right (gap .3), 0.3 wrong (gap .3): if 0.7 and 0.8 shared a bin the gaps would partly cancel.
    ece = expected_calibration_error([0.7, 0.8, 0.3, 0.0, 1.0], [True, False, False, False, True])
    assert ece == pytest.approx((0.3 + 0.8 + 0.3) / 5)


def test_perfectly_calibrated_table_has_zero_error():
    """Ten rows at 0.8 with eight right: no gap."""
    assert expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)


def test_evaluate_scores_classes_and_lists_confusions():
    """Accuracy, macro-F1 over the true classes, per-class support, and the most confused pair first."""
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "b", "a"]
    result = evaluate(truth, predicted, [0.9] * 6)
    assert result.accuracy == pytest.approx(3 / 6)
    # F1: a = 2*.5*(1/3)/(.5+1/3) = .4, b = 2*.5*1/1.5 = 2/3, c = 0.
    assert result.macro_f1 == pytest.approx((0.4 + 2 / 3 + 0) / 3)
    assert [s.label for s in result.per_class] == ["a", "b", "c"]
    assert result.per_class[0].support == 3
    assert result.confused[0] == ("a", "b", 2)


def test_repeated_texts_get_the_same_answer_as_alone():
    """A batch with repeats (scored once inside) answers each text as a batch of one would, in order."""
    texts = ["lamp out", "Lamp  OUT", "tree down", "lamp out", "<b>tree down</b>"]
    batch = seed_classifier().predict(texts)
    assert batch == [seed_classifier().predict([t])[0] for t in texts]
    assert batch[0] == batch[1] == batch[3] and batch[2] == batch[4]
