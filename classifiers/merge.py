"""Merging repeat reports and alarms about one real-world problem into one incident.

A new report or alarm joins an open incident when their categories belong to
the same merge family, it lies within the family's radius and its event time
within the window of the incident's last sighting. Among several candidates the
nearest and most similar in words wins: score = distance / radius +
text_weight * (1 - Jaccard similarity of their word sets). The decision runs
atomically in Redis (see :mod:`classifiers.store`); this module holds the
policy and the text features, as plain data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from classifiers.text import normalise_text

DEFAULT_RADIUS_M = 150.0
DEFAULT_WINDOW_S = 3 * 3600.0
MAX_TOKENS = 32

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are at be by for from has have i in is it its my near of on or our please the there this to was "
    "we with el la los las de del en y que un una por para и в на не с у по".split()
)


def _is_cjk(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F") and char.isalpha()


def merge_tokens(text: str) -> tuple[str, ...]:
    """A small, order-free set of word features for similarity.

    Words of two or more letters outside a short stop list; runs of CJK
    characters (no spaces between words) become character bigrams.
    """
    tokens: list[str] = []
    for word in _WORD_RE.findall(normalise_text(text)):
        if not word.isascii() and any(_is_cjk(c) for c in word):
            chars = [c for c in word if _is_cjk(c)]
            tokens.extend(a + b for a, b in zip(chars, chars[1:], strict=False))
            continue
        if len(word) >= 2 and word not in _STOPWORDS and not word.isdigit():
            tokens.append(word)
    seen: dict[str, None] = {}
    for token in tokens:
        seen.setdefault(token, None)
        if len(seen) >= MAX_TOKENS:
            break
    return tuple(seen)


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard similarity of two token sets (0 when both are empty)."""
    left, right = set(a), set(b)
    union = left | right
    return len(left & right) / len(union) if union else 0.0


def merge_score(distance_m: float, radius_m: float, similarity: float, text_weight: float) -> float:
    """Lower is a better match. Mirrors the Lua in the store, so the two can be tested together."""
    return distance_m / radius_m + text_weight * (1.0 - similarity)


@dataclass(frozen=True)
class MergeRule:
    """How far and how long a family of categories merges."""

    family: str
    radius_m: float = DEFAULT_RADIUS_M
    window_s: float = DEFAULT_WINDOW_S


@dataclass(frozen=True)
class MergePolicy:
    """Which categories merge with which, and within what radius and window.

    By default each category is its own family; ``families`` maps a category to
    a shared family name (e.g. ``flooding`` and ``blocked_drain`` -> ``water``).
    """

    families: Mapping[str, str] = field(default_factory=dict)
    radii_m: Mapping[str, float] = field(default_factory=dict)  # by family
    windows_s: Mapping[str, float] = field(default_factory=dict)  # by family
    default_radius_m: float = DEFAULT_RADIUS_M
    default_window_s: float = DEFAULT_WINDOW_S
    text_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.default_radius_m <= 0 or self.default_window_s <= 0:
            raise ValueError("merge radius and window must be positive")
        if not 0 <= self.text_weight <= 10:
            raise ValueError("text_weight must be between 0 and 10")

    def rule_for(self, category: str) -> MergeRule:
        family = self.families.get(category, category)
        return MergeRule(
            family=family,
            radius_m=self.radii_m.get(family, self.default_radius_m),
            window_s=self.windows_s.get(family, self.default_window_s),
        )
