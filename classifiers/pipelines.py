"""The candidate feature + model pipelines, by name.

Every pipeline takes texts that :func:`classifiers.text.normalise_text` has already
normalised (so the vectorisers neither lowercase nor call back into our code, and a
model file holds no functions). Each ends in a linear model with a ``decision_function``
(or log-probabilities); confidences come from temperature scaling of those scores
(``classifiers.calibration``), the same way for every candidate. Rare classes are
weighted through per-row sample weights (:func:`class_weights`), so the weighting is a
property of the candidate, not of the saved estimator.

``docs/CLASSIFIER.md`` records how the default was chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifiers.features import CharNgramCounter

DEFAULT_PIPELINE = "words+chars2-5/linearsvc"


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


def class_weights(labels: Sequence[str], power: float) -> np.ndarray:
    """Per-row weights ``(n / (k * n_class)) ** power``: 1 is scikit-learn's "balanced", 0 no weighting.

    Between them, the square root lifts rare classes without letting a handful of rows
    outvote a text's clear majority (NYC: ``N/A | Street/Sidewalk`` was NYPD 36 times and
    DHS twice; fully balanced weights sent all 214 such 2026 rows to DHS).
    """
    values, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    per_class = (len(labels) / (len(values) * counts)) ** power
    return per_class[inverse]


@dataclass(frozen=True)
class Candidate:
    """A pipeline recipe and how strongly it weights rare classes."""

    make: Callable[[], Pipeline]
    class_weight_power: float | None  # None: the estimator weighs classes itself (or not at all)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Pipeline:
        pipeline = self.make()
        if self.class_weight_power is None:
            return _compact(pipeline.fit(list(texts), list(labels)))
        final = pipeline.steps[-1][0]
        weights = class_weights(labels, self.class_weight_power)
        return _compact(pipeline.fit(list(texts), list(labels), **{f"{final}__sample_weight": weights}))


def _compact(pipeline: Pipeline) -> Pipeline:
    """Store a LinearSVC's weights as float32: half the model file, scores equal to about 1e-6.

    The features are float32 already, so the products lose nothing that matters for a
    ranking over a few dozen classes. Other estimators are left as they are.
    """
    final = pipeline.steps[-1][1]
    if isinstance(final, LinearSVC):
        final.coef_ = final.coef_.astype(np.float32)
        final.intercept_ = final.intercept_.astype(np.float32)
    return pipeline


def _logreg_model(class_weight: str | None = None) -> LogisticRegression:
    return LogisticRegression(C=20.0, class_weight=class_weight, max_iter=2000)


def _chars_logreg() -> Pipeline:
    """Character 2-5-grams counted with numpy (``classifiers.features``), TF-IDF, logistic regression."""
    return Pipeline(
        [
            ("features", CharNgramCounter((2, 5))),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            ("model", _logreg_model()),
        ]
    )


def _words_chars_svc() -> Pipeline:
    """Word 1-2-grams and character 2-5-grams within words (numpy counter, n-grams of 2+ texts), a LinearSVC.

    Both TF-IDF with sublinear counts. C = 0.1 (strong regularisation) and fully balanced
    class weights were chosen by 5-fold cross-validated macro-F1 on the training parts of
    the complement sets (``docs/CLASSIFIER.md``); LinearSVC fits in a fraction of the
    logistic regression's time on the same features.
    """
    return Pipeline(
        [
            (
                "features",
                FeatureUnion(
                    [
                        (
                            "words",
                            TfidfVectorizer(lowercase=False, ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
                        ),
                        (
                            "chars",
                            Pipeline(
                                [
                                    ("counts", CharNgramCounter((2, 5), min_df=2)),
                                    ("tfidf", TfidfTransformer(sublinear_tf=True)),
                                ]
                            ),
                        ),
                    ]
                ),
            ),
            ("model", LinearSVC(C=0.1)),
        ]
    )


def _logreg(char_range: tuple[int, int] = (1, 4), words: bool = True) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        return Pipeline([("features", text_features(char_range, words)), ("model", _logreg_model("balanced"))])

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


BALANCED = 1.0
SQRT_BALANCED = 0.5
UNWEIGHTED = 0.0

# "char_wb" names scikit-learn's analyzer; "chars" our numpy counter of the same n-grams.
# "chars2-5/logreg-sqrtw" was the default until issue 17 (kept to compare and to refit old models).
# Without a suffix a model weights classes as scikit-learn's class_weight="balanced" does
# (the char_wb, LinearSVC and SGD candidates through the estimator's own class_weight).
CANDIDATES: dict[str, Candidate] = {
    "words+chars2-5/linearsvc": Candidate(_words_chars_svc, BALANCED),
    "chars2-5/logreg-sqrtw": Candidate(_chars_logreg, SQRT_BALANCED),
    "chars2-5/logreg": Candidate(_chars_logreg, BALANCED),
    "chars2-5/logreg-unweighted": Candidate(_chars_logreg, UNWEIGHTED),
    "char_wb2-5/logreg": Candidate(_logreg(char_range=(2, 5), words=False), None),
    "char_wb1-4/logreg": Candidate(_logreg(words=False), None),
    "words+char_wb1-4/logreg": Candidate(_logreg(), None),
    "char_wb1-4/linearsvc": Candidate(_linear_svc(words=False), None),
    "words+char_wb1-4/linearsvc": Candidate(_linear_svc(), None),
    "words+char_wb1-4/sgd": Candidate(_sgd, None),
    "words+char_wb1-4/complementnb": Candidate(_complement_nb, None),
}


def candidate(name: str = DEFAULT_PIPELINE) -> Candidate:
    """The named candidate."""
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(CANDIDATES)}") from None


def build_pipeline(name: str = DEFAULT_PIPELINE) -> Pipeline:
    """A fresh, unfitted pipeline of the named candidate."""
    return candidate(name).make()


def fit_pipeline(name: str, texts: Sequence[str], labels: Sequence[str]) -> Pipeline:
    """The named candidate fitted on ``texts`` with its class weighting."""
    return candidate(name).fit(texts, labels)
