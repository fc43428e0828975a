"""Learning who handles what from a city's historical service requests (e.g. NYC 311 exports).

Exports of the same system spell their headers differently from year to year
("Complaint Type", "complaint_type"); columns are matched on a normalised name
(lower case, runs of other characters as one underscore), so either spelling of
``--category-col`` finds either header.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import shapely

from dispatch.errors import DispatchError
from dispatch.layers import Layer

MIN_VOTES = 3  # geolocated requests needed before a district value is tied to a feature
_LAT_NAMES = ("latitude", "lat", "y")
_LON_NAMES = ("longitude", "lon", "lng", "long", "x")


def normalise_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def normalise_value(value: str) -> str:
    """How category and agency values are compared: case and spacing do not matter."""
    return " ".join(value.split()).casefold()


@dataclass(frozen=True)
class Rows:
    """Rows of one or more CSV exports, keyed by normalised header."""

    rows: list[dict[str, str]]
    files: tuple[str, ...]

    def column(self, name: str) -> list[str]:
        key = normalise_header(name)
        return [row.get(key, "") or "" for row in self.rows]

    def has(self, name: str) -> bool:
        key = normalise_header(name)
        return any(key in row for row in self.rows)

    def require(self, options: Iterable[tuple[str, str | None]]) -> None:
        """Each (option, column) named must be in at least one file (exports of several vintages differ)."""
        _require(self.has, options)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) per row, NaN where missing or unreadable."""
        lat_key = next((k for k in _LAT_NAMES if self.has(k)), None)
        lon_key = next((k for k in _LON_NAMES if self.has(k)), None)
        if lat_key is None or lon_key is None:
            nan = np.full(len(self.rows), np.nan)
            return nan, nan.copy()
        return _floats(self.column(lat_key)), _floats(self.column(lon_key))


def _require(has: Any, options: Iterable[tuple[str, str | None]]) -> None:
    for option, column in options:
        if column and not has(column):
            raise DispatchError(f"{option} {column!r}: no file of --from-311 has that column")


def require_columns(
    paths: Iterable[str | Path], options: Iterable[tuple[str, str | None]], encoding: str = "utf-8-sig"
) -> None:
    """Rows.require on the files' header rows alone: a wrong column name refused before anything is read or
    written."""
    headers: set[str] = set()
    for path in paths:
        with _opened(Path(path), encoding) as handle:
            headers.update(normalise_header(h) for h in next(csv.reader(handle), []))
    _require(lambda name: normalise_header(name) in headers, options)


def _floats(values: list[str]) -> np.ndarray:
    result = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        try:
            result[i] = float(value)
        except ValueError:
            continue
    result[~np.isfinite(result)] = np.nan
    return result


def not_text(file: Path, encoding: str, exc: UnicodeDecodeError) -> str:
    """The one line for a CSV file that is not in the encoding it was read with, and what to do about it (the
    default, UTF-8 that skips a byte-order mark, is named UTF-8)."""
    named = "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding
    return (
        f"{file}: not {named} text (a byte 0x{exc.object[exc.start]:02x}); "
        "give its encoding with --encoding, e.g. cp1252 or latin-1 for a Windows export"
    )


def read_rows(paths: Iterable[str | Path], required: Iterable[str] = (), encoding: str = "utf-8-sig") -> Rows:
    """Read CSV files (header row; UTF-8 unless ``encoding`` says otherwise); every ``required`` column must exist
    in each file. A file that is not in ``encoding`` is one clear error naming it, not a traceback."""
    rows: list[dict[str, str]] = []
    files = []
    required = tuple(required)
    for path in paths:
        file = Path(path)
        with _opened(file, encoding) as handle:
            _read_csv(handle, file, required, rows)
        files.append(str(file))
    return Rows(rows, tuple(files))


@contextmanager
def _opened(file: Path, encoding: str) -> Iterator[TextIO]:
    """``file`` open as text for the csv module; a missing file, an unknown encoding or bytes not in it are one
    clear error naming it, not a traceback."""
    try:
        with file.open(newline="", encoding=encoding) as handle:
            yield handle
    except UnicodeDecodeError as exc:
        raise DispatchError(not_text(file, encoding, exc)) from None
    except LookupError:
        raise DispatchError(f"--encoding {encoding!r}: not an encoding Python knows (e.g. utf-8, cp1252)") from None
    except FileNotFoundError:
        raise DispatchError(f"{file}: no such file") from None


def _read_csv(handle: Any, file: Path, required: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    reader = csv.reader(handle)
    try:
        header = [normalise_header(h) for h in next(reader)]
    except StopIteration:
        raise DispatchError(f"{file}: empty file, expected a header row") from None
    for name in required:
        if normalise_header(name) not in header:
            raise DispatchError(f"{file}: no column {name!r} (columns: {', '.join(header[:20])})")
    for record in reader:
        rows.append(dict(zip(header, record, strict=False)))


def district_key(value: str) -> str:
    """How a district label is compared with a layer's feature ids: case, spaces, dashes, underscores, dots and the
    leading zeros of numbers do not matter ("C-11" is "C11", "04" is "4", "district 7" is "District7")."""
    folded = re.sub(r"[\s\-_.]+", "", value.casefold())
    return re.sub(r"(?<!\d)0+(?=\d)", "", folded)


@dataclass(frozen=True)
class LearnedRoute:
    """A category and the agency that handled most of its requests."""

    category: str  # the most frequent spelling
    agency: str
    support: int  # requests of this category seen
    share: float  # of those, handled by ``agency``
    keywords: tuple[str, ...] = ()


@dataclass
class LearnedMapping:
    routes: list[LearnedRoute]
    rows_used: int
    rows_skipped: int
    majority_agency: str  # the single most frequent agency: the baseline any mapping must beat


def learn_routes(
    rows: Rows, category_col: str, agency_col: str, descriptor_col: str | None = None, min_rows: int = 1
) -> LearnedMapping:
    """category -> majority agency (ties: alphabetical), with how clear-cut each choice is."""
    counts: dict[str, Counter[str]] = {}
    spellings: dict[str, Counter[str]] = {}
    descriptors: dict[str, Counter[str]] = {}
    agencies: Counter[str] = Counter()
    categories = rows.column(category_col)
    agency_values = rows.column(agency_col)
    details = rows.column(descriptor_col) if descriptor_col else [""] * len(categories)
    skipped = 0
    for category, agency, detail in zip(categories, agency_values, details, strict=True):
        category, agency = category.strip(), agency.strip()
        if not category or not agency:
            skipped += 1
            continue
        key = normalise_value(category)
        counts.setdefault(key, Counter())[agency] += 1
        spellings.setdefault(key, Counter())[category] += 1
        if detail.strip():
            descriptors.setdefault(key, Counter())[detail.strip()] += 1
        agencies[agency] += 1
    if not agencies:
        raise DispatchError(f"no rows with both {category_col!r} and {agency_col!r} in {', '.join(rows.files)}")
    routes = []
    for key, by_agency in sorted(counts.items()):
        total = sum(by_agency.values())
        if total < min_rows:
            continue
        agency, hits = min(by_agency.items(), key=lambda item: (-item[1], item[0]))
        name = min(spellings[key].items(), key=lambda item: (-item[1], item[0]))[0]
        words = tuple(w for w, _ in descriptors.get(key, Counter()).most_common(5))
        routes.append(LearnedRoute(name, agency, total, hits / total, words))
    majority = min(agencies.items(), key=lambda item: (-item[1], item[0]))[0]
    return LearnedMapping(routes, len(categories) - skipped, skipped, majority)


@dataclass
class DistrictMatch:
    """How the values of a district column relate to the features of a layer."""

    to_feature: dict[str, str]  # column value -> feature id
    votes: int  # rows with coordinates inside the layer and a district value
    agreeing: int  # of those, rows whose point lies in the feature their value maps to
    unmatched: dict[str, int] = field(default_factory=dict)  # values with no feature, and their row counts

    @property
    def agreement(self) -> float:
        return self.agreeing / self.votes if self.votes else 0.0


def match_districts(rows: Rows, district_col: str, layer: Layer, exclude: np.ndarray | None = None) -> DistrictMatch:
    """Learn which feature each district value means ('04 BRONX' -> 204) from where its requests lie.

    A value that is itself a feature id maps to it; otherwise the feature holding
    most of the value's geolocated requests wins, if it holds more than half and at
    least ``MIN_VOTES``. Two values never share a feature: the one seen more keeps it. Rows marked in ``exclude``
    (requests on a geocoder's placeholder point, dispatch/onboardchecks.py) neither vote nor count in the agreement.
    """
    values = [v.strip() for v in rows.column(district_col)]
    lats, lons = rows.coordinates()
    if exclude is not None:
        lats, lons = np.where(exclude, np.nan, lats), np.where(exclude, np.nan, lons)
    located = layer.locate(shapely.points(np.nan_to_num(lons, nan=1e9), np.nan_to_num(lats, nan=1e9)))
    votes: dict[str, Counter[str]] = {}
    seen: Counter[str] = Counter()
    ids = set(layer.feature_ids)
    for value, feature in zip(values, located.tolist(), strict=True):
        if not value:
            continue
        seen[value] += 1
        if feature >= 0:
            votes.setdefault(value, Counter())[layer.feature_ids[feature]] += 1
    mapping: dict[str, str] = {}
    unmatched: dict[str, int] = {}
    by_key: dict[str, list[str]] = {}
    for feature_id in layer.feature_ids:
        by_key.setdefault(district_key(feature_id), []).append(feature_id)
    for value, total in seen.items():
        if value in ids:
            mapping[value] = value
            continue
        spelt = by_key.get(district_key(value), [])
        if len(spelt) == 1:  # the same label written differently ("C-11" for C11)
            mapping[value] = spelt[0]
            continue
        ballot = votes.get(value)
        if ballot:
            feature, hits = ballot.most_common(1)[0]
            if hits >= MIN_VOTES and hits * 2 > sum(ballot.values()):
                mapping[value] = feature
                continue
        unmatched[value] = total
    # one value per feature: where two values claim a feature, the one with more requests keeps it
    by_feature: dict[str, str] = {}
    for value, feature in sorted(mapping.items(), key=lambda item: -seen[item[0]]):
        if feature in by_feature and district_key(value) != district_key(feature):  # spellings of its id share it
            unmatched[value] = seen[value]
        else:
            by_feature.setdefault(feature, value)
    mapping = {value: feature for value, feature in mapping.items() if value not in unmatched}
    counted = agreeing = 0
    for value, feature in zip(values, located.tolist(), strict=True):
        if value in mapping and feature >= 0:
            counted += 1
            agreeing += mapping[value] == layer.feature_ids[feature]
    return DistrictMatch(mapping, counted, agreeing, unmatched)


def iter_mapping_csv(path: str | Path, encoding: str = "utf-8-sig") -> Iterator[tuple[str, str, str]]:
    """(category, unit, unit name) from a CSV with columns ``category``, ``unit`` and optionally ``unit_name``."""
    rows = read_rows([path], required=("category", "unit"), encoding=encoding)
    names = rows.column("unit_name") if rows.has("unit_name") else [""] * len(rows.rows)
    for category, unit, name in zip(rows.column("category"), rows.column("unit"), names, strict=True):
        if category.strip() and unit.strip():
            yield category.strip(), unit.strip(), name.strip() or unit.strip()
