"""``cityloop route PACK --csv IN --out OUT``: a city's requests routed in batches, as fast as the Python API.

One ``cityloop route`` per request costs a process start and a pack load (about 0.9 s of CPU); a year of a city's
requests that way takes hours. Here the pack is loaded once and the rows go through ``Dispatcher.assign_batch`` in
chunks. Every input row is written out, in order, with its columns and three more: ``unit``, ``rule`` and
``problem``. A row that cannot be routed (no coordinates, a category the pack does not know, a point outside
every area goes to the fallback unit as in production) keeps an empty unit and says why in ``problem``; none is
dropped. Categories may be given as the pack's codes or names (case and spacing do not matter).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from dispatch.history import normalise_header, not_text

CHUNK = 20_000
PROGRESS_EVERY_S = 5.0


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class RouteTotals:
    """What a batch run did, for its summary line."""

    rows: int = 0
    routed: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        skipped = "; ".join(f"{n:,} {why}" for why, n in self.problems.most_common()) or "none"
        return (
            f"routed {self.routed:,} of {self.rows:,} rows to {len(self.units)} units in {self.seconds:.1f} s "
            f"({rate:,.0f} rows/s); not routed: {skipped}"
        )


def category_codes(pack: Any) -> dict[str, str]:
    """Every spelling a row may use for a category (its code or its name, case and spacing folded) -> code.

    A name wins over another category's code: a city's own "Other" (code ``other-roads``, name "Other") is the
    city's, not the catch-all ``other`` (named "Other (not in the catalogue)"), which keeps its code."""
    codes: dict[str, str] = {}
    for category in pack.spec.categories:
        codes[_key(category.code)] = category.code
    for category in pack.spec.categories:
        codes[_key(category.name)] = category.code
    return codes


def _float(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def route_csv(
    pack: Any,
    source: TextIO,
    out: TextIO,
    *,
    category_col: str,
    lat_col: str,
    lon_col: str,
    at: datetime | None = None,
    explain: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RouteTotals:
    """Route every row of ``source`` (CSV with a header) into ``out``; the totals."""
    from dispatch import Dispatcher

    reader = csv.DictReader(source)
    header = list(reader.fieldnames or [])
    by_key = {normalise_header(h): h for h in header}  # any spelling of a header finds it, as in `city init`
    category_col, lat_col, lon_col = (_column(by_key, c, header) for c in (category_col, lat_col, lon_col))
    added = ["unit", "rule", "problem", *(["explanation"] if explain else [])]
    clash = [c for c in added if c in header]
    if clash:
        raise ValueError(f"the input already has column(s) {', '.join(clash)}, which the output adds; rename them")
    # a ragged row (more fields than the header, e.g. a trailing comma) keeps its extra fields out of the output
    writer = csv.DictWriter(out, fieldnames=header + added, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    dispatcher, codes, totals = Dispatcher(pack), category_codes(pack), RouteTotals()
    started = last_said = time.monotonic()
    for chunk in _chunks(reader, CHUNK):
        _route_chunk(dispatcher, codes, chunk, category_col, lat_col, lon_col, at, explain, totals)
        writer.writerows(chunk)
        totals.seconds = time.monotonic() - started
        if progress and time.monotonic() - last_said >= PROGRESS_EVERY_S:
            progress(f"{totals.rows:,} rows routed ({totals.rows / max(totals.seconds, 1e-9):,.0f}/s)")
            last_said = time.monotonic()
    totals.seconds = time.monotonic() - started
    return totals


def _column(by_key: dict[str, str], wanted: str, header: list[str]) -> str:
    found = by_key.get(normalise_header(wanted))
    if found is None:
        raise ValueError(f"no column {wanted!r} (columns: {', '.join(header[:20])})")
    return found


def _chunks(reader: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in reader:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _route_chunk(
    dispatcher: Any,
    codes: dict[str, str],
    rows: list[dict[str, Any]],
    category_col: str,
    lat_col: str,
    lon_col: str,
    at: datetime | None,
    explain: bool,
    totals: RouteTotals,
) -> None:
    ready: list[int] = []
    categories: list[str] = []
    lats, lons = [], []
    for i, row in enumerate(rows):
        given = row.get(category_col) or ""
        code = codes.get(_key(given))
        lat, lon = _float(row.get(lat_col)), _float(row.get(lon_col))
        problem = ""
        if code is None:
            problem = f"unknown category {given!r}" if given.strip() else "no category"
        elif math.isnan(lat) or math.isnan(lon):
            problem = "no coordinates"
        elif not (-90 <= lat <= 90 and -180 <= lon <= 180):
            problem = "coordinates out of range"
        row.update(unit="", rule="", problem=problem)
        if problem:
            totals.problems[problem if not problem.startswith("unknown category") else "unknown category"] += 1
            continue
        ready.append(i)
        categories.append(code)  # type: ignore[arg-type]
        lats.append(lat)
        lons.append(lon)
    totals.rows += len(rows)
    if not ready:
        return
    assignments = dispatcher.assign_batch(categories, np.asarray(lats), np.asarray(lons), now=at)
    for i, assignment in zip(ready, assignments, strict=True):
        rows[i]["unit"], rows[i]["rule"] = assignment.unit_id, assignment.rule
        if explain:
            rows[i]["explanation"] = json.dumps(assignment.explanation, ensure_ascii=False, default=str)
        totals.units[assignment.unit_id] += 1
    totals.routed += len(ready)


def run(pack: Any, csv_in: Path, csv_out: Path, encoding: str, **options: Any) -> RouteTotals:
    """The command's file handling: one clear error for an unreadable input, the output written whole or not at all."""
    tmp = csv_out.with_name(csv_out.name + ".partial")
    try:
        with csv_in.open(newline="", encoding=encoding) as source, tmp.open("w", newline="", encoding="utf-8") as out:
            totals = route_csv(pack, source, out, progress=lambda m: print(m, file=sys.stderr), **options)
    except UnicodeDecodeError as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(not_text(csv_in, encoding, exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(csv_out)
    return totals
