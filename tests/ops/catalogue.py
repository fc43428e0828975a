"""Reading docs/METRICS.md, and finding the metric names a PromQL expression uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "docs" / "METRICS.md"

_ROW = re.compile(r"^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \|\s*(counter|gauge|histogram|summary)\s*\|([^|]*)\|")


@dataclass(frozen=True)
class Entry:
    name: str
    type: str
    labels: frozenset[str]


def catalogue() -> dict[str, Entry]:
    """Every row of the catalogue's tables, by metric name."""
    entries = {}
    for line in CATALOGUE.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            entries[name] = Entry(name, kind, frozenset(re.findall(r"`([a-z_]+)`", labels)))
    return entries


_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
             "inf", "nan"}  # fmt: skip
_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, label names, keywords and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\$\{?[A-Za-z_]+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def base_name(series: str, entries: dict[str, Entry]) -> str:
    """A histogram's ``_bucket``/``_sum``/``_count`` series maps to the histogram's name."""
    for suffix in _SUFFIXES:
        if series.endswith(suffix) and entries.get(series[: -len(suffix)], Entry("", "", frozenset())).type in (
            "histogram",
            "summary",
        ):
            return series[: -len(suffix)]
    return series
