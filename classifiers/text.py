"""Report text -> event category with a confidence and the runners-up.

The default model reads any language without a language setting: character
n-grams (within word boundaries) carry Chinese, which has no spaces, and survive
typos; word n-grams add precision where words exist. A linear model over both
is fast enough to classify tens of thousands of reports a second in batches.
"""

from __future__ import annotations

import csv
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

_TAG_RE = re.compile(r"<[^>]{0,400}>")
_SPACE_RE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Strip HTML, fold Unicode compatibility forms and case, collapse white space."""
    text = html.unescape(_TAG_RE.sub(" ", text))
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class Classification:
    """The model's answer for one text."""

    category: str
    confidence: float
    top: tuple[tuple[str, float], ...]


class TextClassifier:
    """A trained text model over a fixed set of categories."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.classes: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str]) -> TextClassifier:
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        if len(set(labels)) < 2:
            raise ValueError("need at least two categories to train a classifier")
        pipeline = Pipeline(
            [
                (
                    "features",
                    FeatureUnion(
                        [
                            (
                                "words",
                                TfidfVectorizer(
                                    preprocessor=normalise_text, ngram_range=(1, 2), sublinear_tf=True, min_df=1
                                ),
                            ),
                            (
                                "chars",
                                TfidfVectorizer(
                                    preprocessor=normalise_text,
                                    analyzer="char_wb",
                                    ngram_range=(1, 4),
                                    sublinear_tf=True,
                                    min_df=1,
                                ),
                            ),
                        ]
                    ),
                ),
                ("model", LogisticRegression(C=20.0, class_weight="balanced", max_iter=3000)),
            ]
        )
        pipeline.fit(list(texts), list(labels))
        return cls(pipeline)

    def predict(self, texts: Sequence[str], top_k: int = 3) -> list[Classification]:
        """Classify a batch of texts (one vectorised call)."""
        if not texts:
            return []
        probabilities = self._pipeline.predict_proba(list(texts))
        k = min(top_k, len(self.classes))
        order = np.argsort(-probabilities, axis=1)[:, :k]
        result = []
        for row, ranked in zip(probabilities, order, strict=True):
            top = tuple((self.classes[j], round(float(row[j]), 4)) for j in ranked)
            result.append(Classification(top[0][0], top[0][1], top))
        return result


def seed_corpus() -> tuple[list[str], list[str]]:
    """The demo city's seed corpus, shipped with the package."""
    texts, labels = [], []
    with resources.files("classifiers").joinpath("data/seed_reports.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            texts.append(row["text"])
            labels.append(row["category"])
    return texts, labels


@lru_cache(maxsize=1)
def seed_classifier() -> TextClassifier:
    """A classifier trained on the seed corpus (about a second, once per process)."""
    return TextClassifier.train(*seed_corpus())
