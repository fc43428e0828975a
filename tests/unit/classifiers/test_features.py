"""Character n-gram counts with numpy: the n-grams of each padded word, nothing across words or texts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from classifiers.features import CharNgramCounter, ngram_hashes


def reference_ngrams(text: str, low: int, high: int) -> Counter[str]:
    """The n-grams of each word padded with one space on each side, by plain string slicing."""
    grams: Counter[str] = Counter()
    for word in text.split():
        padded = f" {word} "
        for n in range(low, high + 1):
            grams.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


TEXTS = [
    "deep pothole outside number 12",
    "a b",  # one-letter words: their n-grams are shorter than the longest n
    "路灯坏了 晚上很黑",
    "яма на дороге",
    "emoji 🚧 here",  # outside the Basic Multilingual Plane
    "",
    "pothole",
]


def test_counts_match_plain_string_slicing():
    """For every pair of texts, the dot product of count rows equals the n-grams they share (with counts)."""
    counter = CharNgramCounter((2, 5)).fit(TEXTS)
    counts = counter.transform(TEXTS).toarray()
    reference = [reference_ngrams(t, 2, 5) for t in TEXTS]
    assert counter.vocabulary_hashes_.size == len(set().union(*reference))
    for i, left in enumerate(reference):
        assert counts[i].sum() == sum(left.values())
        for j, right in enumerate(reference):
            assert counts[i] @ counts[j] == sum(left[g] * right[g] for g in left)


def test_no_ngram_crosses_a_word_or_a_text():
    """'ab cd' has no 'b c'; the texts of a batch are not joined."""
    rows, hashes = ngram_hashes(["ab cd", "ef"], (2, 3))
    together = sorted(ngram_hashes(["ab", "cd", "ef"], (2, 3))[1].tolist())
    assert sorted(hashes.tolist()) == together
    assert rows.tolist().count(1) == sum(reference_ngrams("ef", 2, 3).values())


def test_unknown_ngrams_are_ignored_and_shapes_hold():
    """Only n-grams seen in training count; an empty batch or text gives empty rows."""
    counter = CharNgramCounter((2, 3)).fit(["pothole"])
    assert counter.transform(["zzz"]).nnz == 0
    assert counter.transform([]).shape == (0, counter.vocabulary_hashes_.size)
    assert counter.transform([""]).shape == (1, counter.vocabulary_hashes_.size)
    assert CharNgramCounter().fit([""]).transform(["abc"]).shape == (1, 1)


def test_the_length_is_part_of_the_hash():
    """The 2-gram ' a' and the 3-gram ' a ' never share a column, nor do n-grams of different lengths."""
    _, hashes = ngram_hashes(["a"], (2, 3))
    assert len(set(hashes.tolist())) == 3  # ' a', 'a ', ' a '


def test_invalid_range_is_refused():
    with pytest.raises(ValueError):
        CharNgramCounter((3, 2)).fit(["x"])


def test_transform_is_deterministic_across_calls():
    counter = CharNgramCounter().fit(TEXTS)
    first, second = counter.transform(TEXTS), counter.transform(list(reversed(TEXTS)))
    np.testing.assert_array_equal(first.toarray(), second.toarray()[::-1])


def test_min_df_keeps_exactly_the_ngrams_of_two_or_more_texts():
    """Document frequency counts texts, not occurrences: "ab" twice in "abab" is still one text."""
    texts = ["abab bb", "bb cc", "cc dd", "ee"]
    rows, hashes = ngram_hashes(texts, (2, 3))
    frequency = Counter(h for _, h in set(zip(rows.tolist(), hashes.tolist(), strict=True)))
    expected = sorted(h for h, n in frequency.items() if n >= 2)
    fitted = CharNgramCounter((2, 3), min_df=2).fit(texts)
    assert fitted.vocabulary_hashes_.tolist() == expected
    assert 0 < len(expected) < len(frequency)  # the test means something: some n-grams are dropped
    ab = set(ngram_hashes(["ab"], (2, 2))[1].tolist()) - set(ngram_hashes(["a", "b"], (2, 2))[1].tolist())
    assert len(ab) == 1 and not ab & set(expected)
    only_once = CharNgramCounter((2, 3), min_df=2).fit(["xyz", "uvw"])
    assert only_once.vocabulary_hashes_.size == 0
    assert CharNgramCounter((2, 3), min_df=2).fit(texts).transform(["dd"]).nnz == 0  # "dd" is in one text


def test_min_df_below_one_is_refused():
    with pytest.raises(ValueError, match="min_df"):
        CharNgramCounter((2, 3), min_df=0).fit(["ab"])
