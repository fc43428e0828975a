"""The candidate feature + model pipelines, by name.

Every pipeline takes texts that :func:`classifiers.text.normalise_text` has already
normalised (so the vectorisers neither lowercase nor call back into our code, and a
model file holds only scikit-learn, numpy and scipy types). Each ends in a linear
model with a ``decision_function``; confidences come from temperature scaling of those
scores (``classifiers.calibration``), the same way for every candidate.

``docs/CLASSIFIER.md`` records how the default was chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifiers.features import CharNgramCounter

DEFAULT_PIPELINE = "chars2-5/logreg"


def text_features(char_range: tuple[int, int] = (1, 4), words: bool = True) -> FeatureUnion:
    """Word 1-2-grams and character n-grams within word boundaries, both TF-IDF with sublinear counts.

    Character n-grams read any script (Chinese has no spaces) and survive typos; word
    n-grams add precision where words exist.
    """
    parts: list[tuple[str, TfidfVectorizer]] = []
    if words:
        parts.append(
            ("words", TfidfVectorizer(lowercase=False, ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32))
        )
    parts.append(
        (
            "chars",
            TfidfVectorizer(
                lowercase=False, analyzer="char_wb", ngram_range=char_range, sublinear_tf=True, dtype=np.float32
            ),
        )
    )
    return FeatureUnion(parts)


def _logreg_model() -> LogisticRegression:
    return LogisticRegression(C=20.0, class_weight="balanced", max_iter=2000)


def _chars_logreg() -> Pipeline:
    """Character 2-5-grams counted with numpy (``classifiers.features``), TF-IDF, logistic regression."""
    return Pipeline(
        [
            ("features", CharNgramCounter((2, 5))),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            ("model", _logreg_model()),
        ]
    )


def _logreg(char_range: tuple[int, int] = (1, 4), words: bool = True) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        return Pipeline([("features", text_features(char_range, words)), ("model", _logreg_model())])

    return make


def _linear_svc(words: bool = True) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        return Pipeline(
            [("features", text_features(words=words)), ("model", LinearSVC(C=1.0, class_weight="balanced"))]
        )

    return make


def _sgd() -> Pipeline:
    return Pipeline(
        [
            ("features", text_features()),
            (
                "model",
                SGDClassifier(loss="modified_huber", alpha=1e-4, class_weight="balanced", max_iter=50, random_state=0),
            ),
        ]
    )


def _complement_nb() -> Pipeline:
    return Pipeline([("features", text_features()), ("model", ComplementNB(alpha=0.3))])


# "char_wb" names scikit-learn's analyzer; "chars" our numpy counter of the same n-grams.
CANDIDATES: dict[str, Callable[[], Pipeline]] = {
    "chars2-5/logreg": _chars_logreg,
    "char_wb2-5/logreg": _logreg(char_range=(2, 5), words=False),
    "char_wb1-4/logreg": _logreg(words=False),
    "words+char_wb1-4/logreg": _logreg(),
    "char_wb1-4/linearsvc": _linear_svc(words=False),
    "words+char_wb1-4/linearsvc": _linear_svc(),
    "words+char_wb1-4/sgd": _sgd,
    "words+char_wb1-4/complementnb": _complement_nb,
}


def build_pipeline(name: str = DEFAULT_PIPELINE) -> Pipeline:
    """A fresh, unfitted pipeline of the named candidate."""
    try:
        return CANDIDATES[name]()
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(CANDIDATES)}") from None
