"""Report text -> event category with a calibrated confidence and the runners-up.

The default model reads any language without a language setting: character n-grams
(within word boundaries) carry Chinese, which has no spaces, and survive typos; word
n-grams add precision where words exist. Class weights counter imbalance, and one
temperature fitted out of fold makes the confidence mean what it says
(``classifiers.calibration``). ``docs/CLASSIFIER.md`` has the measurements behind it.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from classifiers.calibration import decision_scores, fit_temperature, out_of_fold_scores, softmax
from classifiers.errors import TrainingDataError
from classifiers.pipelines import DEFAULT_PIPELINE, candidate, fit_pipeline

_TAG_RE = re.compile(r"<[^>]{0,400}>")
_SPACE_RE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Strip HTML, fold Unicode compatibility forms and case, collapse white space."""
    text = html.unescape(_TAG_RE.sub(" ", text))
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", text).strip()


def training_sha256(texts: Sequence[str], labels: Sequence[str]) -> str:
    """Fingerprint of the training rows as the model saw them: normalised text and label, in order."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(json.dumps([normalise_text(text), label], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Classification:
    """The model's answer for one text."""

    category: str
    confidence: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class TrainingSummary:
    """How a model was trained; saved with it."""

    pipeline: str
    rows: int
    sha256: str
    temperature: float
    calibration_folds: int


class TextClassifier:
    """A trained text model over a fixed set of categories."""

    def __init__(self, pipeline: Pipeline, summary: TrainingSummary) -> None:
        self._pipeline = pipeline
        self.summary = summary
        self.classes: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)

    @property
    def pipeline(self) -> Pipeline:
        """The fitted scikit-learn pipeline (over normalised text)."""
        return self._pipeline

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        pipeline: str = DEFAULT_PIPELINE,
        calibration_folds: int = 5,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
    ) -> TextClassifier:
        """Fit the named pipeline on all rows, and its temperature on ``calibration_folds`` out-of-fold runs.

        ``calibration_folds`` below 2 skips calibration (temperature 1). ``progress`` hears
        a line per stage, for long runs.
        """
        if len(texts) != len(labels):
            raise TrainingDataError("texts and labels differ in length")
        labels = [str(label) for label in labels]
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise TrainingDataError("need at least two categories to train a classifier")
        candidate(pipeline)  # an unknown name fails before any work
        normalised = [normalise_text(t) for t in texts]
        # The solver's dense products are small (rows x classes); BLAS threads cost more than they save
        # (one thread fitted the seed corpus 3-4x faster on the 2-core machine, more so when it is busy).
        with threadpool_limits(limits=1, user_api="blas"):
            return cls._fit(normalised, texts, labels, classes, pipeline, calibration_folds, seed, progress)

    @classmethod
    def _fit(
        cls,
        normalised: list[str],
        texts: Sequence[str],
        labels: list[str],
        classes: list[str],
        pipeline: str,
        calibration_folds: int,
        seed: int,
        progress: Callable[[str], None] | None,
    ) -> TextClassifier:
        folds = min(calibration_folds, len(normalised))
        temperature = 1.0
        if folds >= 2:
            scores = out_of_fold_scores(
                lambda x, y: fit_pipeline(pipeline, x, y), normalised, labels, classes, folds, seed, progress
            )
            index = {c: i for i, c in enumerate(classes)}
            temperature = fit_temperature(scores, np.array([index[label] for label in labels]))
        if progress:
            progress(f"fitting {pipeline} on all {len(labels)} rows ({len(classes)} classes)")
        fitted = fit_pipeline(pipeline, normalised, labels)
        summary = TrainingSummary(pipeline, len(labels), training_sha256(texts, labels), temperature, max(folds, 0))
        return cls(fitted, summary)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probability of each class (columns in ``classes`` order) for each text.

        Texts that normalise to the same string are scored once: reports of one problem
        often repeat ("streetlight out"), and vectorising is nearly all of the cost.
        """
        positions: dict[str, int] = {}
        rows = [positions.setdefault(normalise_text(t), len(positions)) for t in texts]
        scores = decision_scores(self._pipeline, list(positions))
        probabilities = softmax(scores, self.summary.temperature)
        return probabilities if len(positions) == len(rows) else probabilities[rows]

    def predict(self, texts: Sequence[str], top_k: int = 3) -> list[Classification]:
        """Classify a batch of texts (one vectorised call)."""
        if not texts:
            return []
        probabilities = self.probabilities(texts)
        k = min(top_k, len(self.classes))
        if k < len(self.classes):
            candidates = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
        else:
            candidates = np.tile(np.arange(len(self.classes)), (len(texts), 1))
        picked = np.take_along_axis(probabilities, candidates, axis=1)
        order = np.take_along_axis(candidates, np.argsort(-picked, axis=1, kind="stable"), axis=1)
        ranked = np.round(np.take_along_axis(probabilities, order, axis=1), 4).tolist()
        classes = self.classes
        result = []
        for columns, values in zip(order.tolist(), ranked, strict=True):
            top = tuple((classes[j], value) for j, value in zip(columns, values, strict=True))
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
    """A classifier trained on the seed corpus (a few seconds, once per process)."""
    return TextClassifier.train(*seed_corpus())
