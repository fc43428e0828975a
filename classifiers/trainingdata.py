"""Labelled rows from a city's historical CSV export: which columns make the text, which is the label.

Exports of the same system spell headers differently across years ('Complaint Type',
'complaint_type'), so columns are matched by a folded name: case, spaces, underscores
and hyphens do not matter. Several text columns are joined into one text (for example
a short descriptor and the location type).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.errors import TrainingDataError

TEXT_SEPARATOR = " | "
_FOLD_RE = re.compile(r"[\s_\-]+")


def fold_column_name(name: str) -> str:
    """'Complaint Type', 'complaint_type' and 'COMPLAINT-TYPE' fold to the same key."""
    return _FOLD_RE.sub("", name.strip().lstrip("\ufeff")).casefold()


@dataclass(frozen=True)
class LabelledRows:
    """Texts with their labels, and how many input rows had no text or no label."""

    texts: list[str]
    labels: list[str]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> Counter[str]:
        return Counter(self.labels)


def resolve_columns(header: Sequence[str], wanted: Iterable[str], source: str) -> list[str]:
    """The header's own spelling of each wanted column; a clear error naming what exists otherwise."""
    by_fold = {fold_column_name(h): h for h in header}
    resolved = []
    for name in wanted:
        found = by_fold.get(fold_column_name(name))
        if found is None and not [h for h in header if h.strip()]:
            raise TrainingDataError(f"{source} is empty: no header row, so no column {name!r}")
        if found is None:
            raise TrainingDataError(f"{source} has no column {name!r}; it has: {', '.join(header)}")
        resolved.append(found)
    return resolved


def join_text(values: Iterable[str | None]) -> str:
    """Non-empty parts joined into one text."""
    return TEXT_SEPARATOR.join(v.strip() for v in values if v and v.strip())


DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024


def detect_delimiter(sample: str) -> str:
    """The delimiter of a CSV sample: comma, semicolon, tab or bar (Excel in many locales writes ';').

    The header line decides first (a header has no quoted delimiters in practice); ``csv.Sniffer`` is asked only when
    the header holds none of them, and a single-column file falls back to the comma."""
    header = sample.splitlines()[0] if sample else ""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_labelled_csv(
    path: Path | str,
    text_columns: Sequence[str],
    label_column: str,
    *,
    encoding: str = "utf-8-sig",
    delimiter: str | None = None,
) -> LabelledRows:
    """Read ``path``; rows with an empty text or label are skipped and counted.

    ``delimiter`` None detects it from the header; ``encoding`` is any codec Python knows (latin-1, cp1251, gbk)."""
    path = Path(path)
    if not text_columns:
        raise TrainingDataError("name at least one text column")
    try:
        with path.open(encoding=encoding, newline="") as fh:
            sep = delimiter or detect_delimiter(fh.read(SNIFF_BYTES))
            fh.seek(0)
            reader = csv.DictReader(fh, delimiter=sep)
            header = reader.fieldnames or []
            text_cols = resolve_columns(header, text_columns, str(path))
            (label_col,) = resolve_columns(header, [label_column], str(path))
            texts, labels, skipped = [], [], 0
            for row in reader:
                text = join_text(row.get(c) for c in text_cols)
                label = (row.get(label_col) or "").strip()
                if not text or not label:
                    skipped += 1
                    continue
                texts.append(text)
                labels.append(label)
    except FileNotFoundError:
        raise TrainingDataError(f"no such file: {path}") from None
    except LookupError:
        raise TrainingDataError(f"unknown encoding {encoding!r} (try utf-8, latin-1, cp1251, gbk)") from None
    except UnicodeDecodeError as exc:
        named = "UTF-8" if encoding.lower().startswith("utf") else encoding
        raise TrainingDataError(
            f"{path} is not {named} text (byte {exc.start}: {exc.reason}); name its encoding with --encoding, "
            "e.g. --encoding latin-1"
        ) from None
    except csv.Error as exc:
        raise TrainingDataError(f"{path} is not a readable CSV file: {exc}") from None
    return LabelledRows(texts, labels, skipped)


def concat(parts: Iterable[LabelledRows]) -> LabelledRows:
    """Several files' rows as one set."""
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    for part in parts:
        texts.extend(part.texts)
        labels.extend(part.labels)
        skipped += part.skipped
    return LabelledRows(texts, labels, skipped)


def drop_rare_classes(rows: LabelledRows, min_count: int) -> tuple[LabelledRows, dict[str, int]]:
    """Rows of classes with at least ``min_count`` examples, and the classes dropped with their counts."""
    counts = rows.class_counts()
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_count}
    if not dropped:
        return rows, {}
    kept = [(t, label) for t, label in zip(rows.texts, rows.labels, strict=True) if label not in dropped]
    return LabelledRows([t for t, _ in kept], [label for _, label in kept], rows.skipped), dropped
