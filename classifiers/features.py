"""Character n-gram counts within word boundaries, computed with numpy instead of a Python loop per n-gram.

scikit-learn's ``char_wb`` analyzer builds every n-gram as a Python string and looks it
up in a dict: on report-length texts that was over 90% of classification time
(``bench/bench_classifier.py``). Here a batch becomes one array of code points, each
word padded with a space on both sides (`` pothole  deep ``), and the n-grams of every
length are 64-bit polynomial hashes computed for all positions at once; an n-gram is
kept when it contains no double space, i.e. does not cross a word or a text. The
vocabulary is the sorted array of hashes seen in training, so the columns are those of
an exact vocabulary (two different n-grams share a column only if their 64-bit hashes
collide), and the model stays as small as with a string vocabulary.

Unlike ``char_wb`` (which repeats a padded word shorter than ``n`` once more at the next
length), a word contributes only the n-grams it has. ``min_df`` keeps only n-grams seen in
at least that many training texts: an n-gram of one text cannot generalise, and dropping
them shrinks the vocabulary (and the model's weight matrix) by half or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

_BASE = np.uint64(0x100000001B3)  # the 64-bit FNV prime: odd, so the hash is a bijection per step
_SPACE = 32


def _padded_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of all texts, each word as `` word ``, end to end; and the offset where each text ends."""
    padded = ["".join(f" {word} " for word in text.split()) for text in texts]
    ends = np.cumsum(np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded)))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return codes, ends


def ngram_hashes(texts: Sequence[str], ngram_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(text index, hash) of every character n-gram within a padded word, for n in ``ngram_range``."""
    low, high = ngram_range
    codes, ends = _padded_codes(texts)
    total = codes.size
    # doubles[k]: how many adjacent space pairs (j, j + 1) start before k. A window [p, p + n)
    # stays inside one padded word when no pair starts in [p, p + n - 2].
    space = codes == _SPACE
    doubles = np.zeros(total + 1, dtype=np.int64)
    if total > 1:
        np.cumsum(space[:-1] & space[1:], out=doubles[1:total])
        doubles[total] = doubles[total - 1]
    text_of = np.repeat(np.arange(len(texts)), np.diff(ends, prepend=0))
    rows: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    rolling = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for n in range(1, high + 1):
            windows = total - n + 1
            if windows <= 0:
                break
            rolling = rolling[:windows] * _BASE + codes[n - 1 : n - 1 + windows]
            if n < low:
                continue
            inside = np.flatnonzero(doubles[n - 1 : n - 1 + windows] == doubles[:windows])
            rows.append(text_of[inside])
            hashes.append(rolling[inside] ^ np.uint64(n))  # the length keeps "ab" and a 3-gram apart
    if not hashes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(rows), np.concatenate(hashes)


class CharNgramCounter(TransformerMixin, BaseEstimator):
    """Counts of character n-grams within word boundaries, over the n-grams seen in training."""

    def __init__(self, ngram_range: tuple[int, int] = (2, 5), min_df: int = 1) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df

    def fit(self, texts: Sequence[str], y: Any = None) -> CharNgramCounter:
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"invalid ngram_range {self.ngram_range!r}")
        min_df = getattr(self, "min_df", 1)  # counters saved before min_df existed never refit
        if min_df < 1:
            raise ValueError(f"invalid min_df {min_df!r}")
        rows, hashes = ngram_hashes(list(texts), self.ngram_range)
        if min_df == 1:
            self.vocabulary_hashes_ = np.unique(hashes)
            return self
        # Document frequency: sort by (hash, text), count each (text, n-gram) pair once.
        order = np.lexsort((rows, hashes))
        hashes, rows = hashes[order], rows[order]
        first = np.ones(hashes.size, dtype=bool)
        first[1:] = (hashes[1:] != hashes[:-1]) | (rows[1:] != rows[:-1])
        values, document_frequency = np.unique(hashes[first], return_counts=True)
        self.vocabulary_hashes_ = values[document_frequency >= min_df]
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        texts = list(texts)
        vocabulary = self.vocabulary_hashes_
        rows, hashes = ngram_hashes(texts, self.ngram_range)
        if vocabulary.size:
            columns = np.searchsorted(vocabulary, hashes)
            columns[columns == vocabulary.size] = 0
            known = vocabulary[columns] == hashes
            rows, columns = rows[known], columns[known]
        else:
            rows, columns = rows[:0], rows[:0]
        counts = sp.csr_matrix(
            (np.ones(rows.size, dtype=np.float32), (rows, columns)), shape=(len(texts), max(vocabulary.size, 1))
        )
        counts.sum_duplicates()
        return counts

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"chargram{i}" for i in range(self.vocabulary_hashes_.size)], dtype=object)
