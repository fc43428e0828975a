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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from classifiers.calibration import decision_scores, fit_temperature, out_of_fold_scores, softmax
from classifiers.errors import TrainingDataError
from classifiers.pipelines import DEFAULT_PIPELINE, candidate, fit_pipeline

_TAG_RE = re.compile(r"<[^>]{0,400}>")
_SPACE_RE = re.compile(r"\s+")
# Newlines and tabs that an export wrote as the two characters backslash + letter (portal and
# spreadsheet dumps do: "труба.\\nМы боимся"); glued to the words around them they hide both.
_ESCAPED_BREAK_RE = re.compile(r"\\[nrt]")
# Unicode "format" characters (zero-width spaces and joiners, soft hyphens, byte-order marks) and
# the object replacement character an editor leaves for a pasted image: invisible, but they split words.
_INVISIBLE = dict.fromkeys([*range(0x200B, 0x2010), 0x00AD, 0x2060, 0xFEFF, 0xFFFC], " ")


def normalise_text(text: str) -> str:
    """Strip HTML markup and entities, escaped line breaks and invisible characters; fold case and forms.

    Entities are unescaped twice because some exports escape them again (``&amp;nbsp;``).
    """
    text = html.unescape(html.unescape(_TAG_RE.sub(" ", text)))
    text = _ESCAPED_BREAK_RE.sub(" ", text).translate(_INVISIBLE)
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
    """The model's answer for one text.

    ``unknown_share`` is the share of the text's words that the model never saw in training
    (digits and words without spaces between them, as in Chinese, are not judged; such a run counts
    as known words, one per two characters, in the whole the share is taken of); None when
    the model has no word vocabulary or the text no word to judge. A confident answer about
    mostly unknown words is a guess from a few familiar ones ("5 abandoned mattresses").
    """

    category: str
    confidence: float
    top: tuple[tuple[str, float], ...]
    unknown_share: float | None = None


@dataclass(frozen=True, slots=True)
class TrainingSummary:
    """How a model was trained; saved with it."""

    pipeline: str
    rows: int
    sha256: str
    temperature: float
    calibration_folds: int


@dataclass(frozen=True)
class OutOfFold:
    """Each training row's answer from the calibration fold that did not see it (calibrated, in row order).

    Thresholds chosen on these use every row once as unseen data, instead of one small
    holdout. A row whose fold could not score it has category "" and confidence 0.
    """

    categories: tuple[str, ...]
    confidences: np.ndarray


_WORD_RE = re.compile(r"(?u)\b\w\w+\b")  # the word vectorizer's default token pattern
_UNJUDGED_RE = re.compile(r"[\d\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # digits; kana, CJK and Hangul runs
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # kana, CJK and Hangul characters


def _word_vocabulary(pipeline: Pipeline) -> Mapping[str, int] | None:
    """The vocabulary of the pipeline's word vectorizer, if it has one (the older default does not)."""
    features = pipeline.steps[0][1]
    for _, part in getattr(features, "transformer_list", []):
        if isinstance(part, TfidfVectorizer) and part.analyzer == "word":
            return part.vocabulary_
    return None


class TextClassifier:
    """A trained text model over a fixed set of categories."""

    def __init__(self, pipeline: Pipeline, summary: TrainingSummary, out_of_fold: OutOfFold | None = None) -> None:
        self._pipeline = pipeline
        self.summary = summary
        self.classes: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        self.out_of_fold = out_of_fold  # only on a model trained in this process; not saved
        self._vocabulary = _word_vocabulary(pipeline)

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
        out_of_fold = None
        if folds >= 2:
            scores = out_of_fold_scores(
                lambda x, y: fit_pipeline(pipeline, x, y), normalised, labels, classes, folds, seed, progress
            )
            index = {c: i for i, c in enumerate(classes)}
            temperature = fit_temperature(scores, np.array([index[label] for label in labels]))
            out_of_fold = _answers(scores, temperature, classes)
        if progress:
            progress(f"fitting {pipeline} on all {len(labels)} rows ({len(classes)} classes)")
        fitted = fit_pipeline(pipeline, normalised, labels)
        summary = TrainingSummary(pipeline, len(labels), training_sha256(texts, labels), temperature, max(folds, 0))
        return cls(fitted, summary, out_of_fold)

    def unknown_shares(self, texts: Sequence[str]) -> list[float | None]:
        """Per text, the share of its judged words missing from the training vocabulary (see Classification)."""
        return self._unknown_shares([normalise_text(t) for t in texts])

    def _unknown_shares(self, normalised: Sequence[str]) -> list[float | None]:
        vocabulary = self._vocabulary
        if vocabulary is None:
            return [None] * len(normalised)
        shares: list[float | None] = []
        for text in normalised:
            tokens = _WORD_RE.findall(text)
            words = [w for w in tokens if not _UNJUDGED_RE.search(w)]
            # a run without spaces (Chinese, Japanese, Korean) is not judged but is most of such a text: it weighs
            # one word per two characters, so "Hi, <a Chinese sentence> thanks" is not a text of unknown words
            runs = sum(len(_CJK_RE.findall(w)) / 2 for w in tokens if _CJK_RE.search(w))
            unknown = sum(w not in vocabulary for w in words)
            shares.append(unknown / (len(words) + runs) if words else None)
        return shares

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probability of each class (columns in ``classes`` order) for each text."""
        return self._probabilities([normalise_text(t) for t in texts])

    def _probabilities(self, normalised: Sequence[str]) -> np.ndarray:
        """Texts that normalise to the same string are scored once: reports of one problem
        often repeat ("streetlight out"), and vectorising is nearly all of the cost."""
        positions: dict[str, int] = {}
        rows = [positions.setdefault(t, len(positions)) for t in normalised]
        scores = decision_scores(self._pipeline, list(positions))
        probabilities = softmax(scores, self.summary.temperature)
        return probabilities if len(positions) == len(rows) else probabilities[rows]

    def predict(self, texts: Sequence[str], top_k: int = 3) -> list[Classification]:
        """Classify a batch of texts (one vectorised call)."""
        if not texts:
            return []
        normalised = [normalise_text(t) for t in texts]
        probabilities = self._probabilities(normalised)
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
        unknown = self._unknown_shares(normalised)
        for columns, values, share in zip(order.tolist(), ranked, unknown, strict=True):
            top = tuple((classes[j], value) for j, value in zip(columns, values, strict=True))
            result.append(Classification(top[0][0], top[0][1], top, None if share is None else round(share, 4)))
        return result


def _answers(scores: np.ndarray, temperature: float, classes: Sequence[str]) -> OutOfFold:
    """Top class and calibrated confidence per row of out-of-fold scores (``-inf`` where a fold lacked a class)."""
    scored = np.isfinite(scores).any(axis=1)
    probabilities = np.zeros_like(scores)
    if scored.any():
        probabilities[scored] = softmax(scores[scored], temperature)
    best = probabilities.argmax(axis=1)
    categories = tuple(classes[j] if ok else "" for j, ok in zip(best.tolist(), scored.tolist(), strict=True))
    return OutOfFold(categories, probabilities.max(axis=1))


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
