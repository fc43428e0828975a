"""Candidate pipelines: class weighting by a power of scikit-learn's 'balanced' weights, and lookup by name."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

from classifiers.pipelines import CANDIDATES, DEFAULT_PIPELINE, build_pipeline, class_weights

LABELS = ["noise"] * 8 + ["pothole"] * 2


def test_power_one_is_scikit_learns_balanced_weighting():
    np.testing.assert_allclose(class_weights(LABELS, 1.0), compute_sample_weight("balanced", LABELS))


def test_power_zero_weights_every_row_alike_and_a_half_is_the_square_root():
    np.testing.assert_allclose(class_weights(LABELS, 0.0), np.ones(len(LABELS)))
    np.testing.assert_allclose(class_weights(LABELS, 0.5), np.sqrt(compute_sample_weight("balanced", LABELS)))


def test_the_default_is_a_candidate_and_unknown_names_are_refused():
    assert DEFAULT_PIPELINE in CANDIDATES
    with pytest.raises(ValueError, match="unknown pipeline 'bert'"):
        build_pipeline("bert")
