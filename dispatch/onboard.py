"""``cityloop city init``: a first city pack from open data.

Give it the city's jurisdiction layers (GeoJSON) and either a CSV that maps
categories to units, or historical service requests from which the mapping is
learned (each category goes to the agency that handled most of its requests).
It writes ``city.yaml`` and the layers, with default SLAs, an ops centre as the
fallback unit and a catch-all category ``other``, then lints the result. The
pack is a start, meant to be read and edited: rename units, set real SLAs,
add rules.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dispatch.citypack import CityPack, load_city_pack
from dispatch.errors import DispatchError, InvalidCityPack
from dispatch.history import DistrictMatch, LearnedMapping, iter_mapping_csv, learn_routes, match_districts, read_rows
from dispatch.layers import load_layer
from dispatch.lint import DEFAULT_MIN_WIDTH_M, LintReport, lint_city_pack
from dispatch.onboardchecks import check_axes, placeholder_points

OPS_CENTRE = "ops-centre"
OTHER = "other"
_ID_HINT = re.compile(r"(^|_)(id|code|geoid|geocode|key)$|(id|code|cd)$", re.IGNORECASE)
_ARTEFACTS = {"objectid", "fid", "ogc_fid", "shape_leng", "shape_area", "shape__area", "shape__length"}


def slug(text: str, limit: int = 48) -> str:
    """A code for city.yaml: lower case letters, digits and dashes."""
    value = re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")[:limit].strip("-")
    return value or "x"


@dataclass(frozen=True)
class LayerSource:
    name: str
    path: Path
    id_property: str | None = None

    @classmethod
    def parse(cls, text: str) -> LayerSource:
        """``NAME=FILE.geojson[:ID_PROPERTY]``."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise DispatchError(f"--layer {text!r}: expected NAME=FILE.geojson[:ID_PROPERTY]")
        path, colon, prop = rest.rpartition(":")
        if colon and prop and "/" not in prop and "\\" not in prop and path:
            return cls(slug(name), Path(path), prop)
        return cls(slug(name), Path(rest), None)


@dataclass(frozen=True)
class IdChoice:
    layer: str
    id_property: str
    name_property: str | None
    features: int
    reason: str


_CODE_LIKE = re.compile(r"^[A-Za-z]{0,6}[-_ ]?\d{1,8}[A-Za-z]?$")


def _looks_like_codes(values: list[Any]) -> bool:
    """Short codes ("311", "C11", "BK88", "04") rather than words: a district is named by a code, a person not."""
    return all(isinstance(v, int) or _CODE_LIKE.match(str(v).strip()) for v in values)


def choose_id_property(properties: list[dict[str, Any]]) -> tuple[str, str]:
    """A property that is present, non-empty and unique on every feature; names that look like ids first, then
    values that look like codes (so a column of supervisors' surnames, unique by accident, is not chosen).

    Floats (areas, lengths) and GIS artefacts (OBJECTID, Shape_Area) come last: they
    are unique by accident, not by meaning. The reason lists the other candidates, so a wrong pick is one
    ``:ID_PROPERTY`` away.
    """
    if not properties:
        raise DispatchError("no features")
    order = list(properties[0])
    usable = []
    for position, name in enumerate(order):
        values = [p.get(name) for p in properties]
        if any(v is None or v == "" or isinstance(v, dict | list | bool) for v in values):
            continue
        if len({str(v) for v in values}) != len(values):
            continue
        is_float = any(isinstance(v, float) for v in values)
        artefact = name.casefold() in _ARTEFACTS
        usable.append((artefact, is_float, not _ID_HINT.search(name), not _looks_like_codes(values), position, name))
    if not usable:
        raise DispatchError(f"no property is unique and non-empty on every feature (properties: {order})")
    usable.sort()
    artefact, is_float, unhinted, wordy, _, best = usable[0]
    how = "looks like an id" if not unhinted else ("values look like codes" if not wordy else "first unique one")
    if artefact or is_float:
        how = "only unique property; check it"
    others = [u[-1] for u in usable[1:]]
    also = f"; also unique: {', '.join(others[:6])}" if others else ""
    return best, f"unique and non-empty on all {len(properties)} features; {how}{also}"


def choose_name_property(properties: list[dict[str, Any]], id_property: str) -> str | None:
    for name in properties[0] if properties else {}:
        if name != id_property and "name" in name.casefold() and all(isinstance(p.get(name), str) for p in properties):
            return name
    return None


@dataclass(frozen=True)
class HistorySource:
    """Historical requests to learn category -> agency from (``--from-311``)."""

    files: tuple[Path, ...]
    category_col: str
    agency_col: str
    descriptor_col: str | None = None
    district_col: str | None = None
    district_layer: str | None = None
    min_rows: int = 1
    encoding: str = "utf-8-sig"


@dataclass(frozen=True)
class Sla:
    acknowledge: str = "1d"
    resolve: str = "10d"
    clock: str = "working"


@dataclass
class Onboarding:
    """What ``init_city_pack`` did, for the person onboarding the city."""

    pack: CityPack
    layers: list[IdChoice]
    lint: LintReport
    routes: list[tuple[str, str, int, float]]  # (category, unit, support, share); support 0 for a given mapping
    mapping: LearnedMapping | None = None
    districts: DistrictMatch | None = None
    notes: list[str] = field(default_factory=list)


def _read_layer(source: LayerSource) -> IdChoice:
    try:
        document = json.loads(source.path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidCityPack(str(source.path), "-", f"layer {source.name!r}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCityPack(str(source.path), "-", f"not valid GeoJSON: {exc}") from None
    if isinstance(document, dict) and document.get("type") == "Topology":
        raise InvalidCityPack(
            str(source.path),
            "type",
            "TopoJSON is not read; convert it to GeoJSON first (e.g. `npx topojson-client topo2geo` or mapshaper)",
        )
    features = document.get("features") if isinstance(document, dict) else None
    properties = [f.get("properties") or {} for f in features or [] if isinstance(f, dict)]
    if source.id_property is not None:
        prop, reason = source.id_property, "given"
    else:
        prop, reason = choose_id_property(properties)
    name = choose_name_property(properties, prop)
    load_layer(source.path, source.name, prop, name)  # refuse what the pack could not load, naming the source
    return IdChoice(source.name, prop, name, len(properties), reason)


def init_city_pack(
    out: str | Path,
    layers: list[LayerSource],
    *,
    name: str,
    timezone: str = "UTC",
    boundary: str | None = None,
    mapping_csv: str | Path | None = None,
    history: HistorySource | None = None,
    sla: Sla = Sla(),
    overwrite: bool = False,
    encoding: str = "utf-8-sig",
    district_layer: str | None = None,
    district_agencies: tuple[str, ...] = (),
    min_width_m: float = DEFAULT_MIN_WIDTH_M,
) -> Onboarding:
    """Write a city pack to ``out`` from layers and a category mapping (given or learned); lint it.

    Field teams per district: with history, ``history.district_col`` and ``history.district_layer`` (the column's
    values are learnt); with a mapping CSV, ``district_layer`` alone (a team per feature). ``district_agencies``
    limits the teams to those units (as the data names them; case and spacing do not matter); the others keep one
    department covering the city."""
    root = Path(out)
    if (mapping_csv is None) == (history is None):
        raise DispatchError("give either a mapping CSV or historical requests to learn the mapping from")
    if not layers:
        raise DispatchError("give at least one --layer NAME=FILE.geojson")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise DispatchError(f"{root} exists and is not empty; choose another directory or overwrite")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise DispatchError(f"layer names repeat: {names}")
    if boundary is not None and boundary not in names:
        raise DispatchError(f"--boundary {boundary!r} is not one of the layers {names}")
    choices = [_read_layer(layer) for layer in layers]
    area_layer = boundary or names[0]
    onboarding_notes: list[str] = []
    mapping = districts = None
    if history is not None and district_layer is not None:
        raise DispatchError("with --from-311, give the district layer in --district-layer with --district-col")
    given_layer, district_layer = district_layer, None
    district_ids: list[str] = []
    if history is not None:
        rows = read_rows(history.files, required=(history.category_col, history.agency_col), encoding=history.encoding)
        lats, lons = rows.coordinates()
        placeholders = placeholder_points(lats, lons)
        usable = ~placeholders.rows
        for source, choice in zip(layers, choices, strict=True):  # refuse swapped axes before anything is written
            loaded_layer = load_layer(source.path, source.name, choice.id_property, choice.name_property)
            check_axes(loaded_layer, str(source.path), lats[usable], lons[usable])
        said = placeholders.note(int((np.isfinite(lats) & np.isfinite(lons)).sum()))
        if said:
            onboarding_notes.append(said)
        mapping = learn_routes(rows, history.category_col, history.agency_col, history.descriptor_col, history.min_rows)
        routes = [(r.category, r.agency, r.agency, r.support, r.share, r.keywords) for r in mapping.routes]
        if (history.district_col is None) != (history.district_layer is None):
            raise DispatchError("give --district-col and --district-layer together")
        if history.district_col is not None:
            if history.district_layer not in names:
                raise DispatchError(f"--district-layer {history.district_layer!r} is not one of the layers {names}")
            source = layers[names.index(history.district_layer)]
            choice = choices[names.index(history.district_layer)]
            loaded = load_layer(source.path, source.name, choice.id_property, choice.name_property)
            districts = match_districts(rows, history.district_col, loaded, exclude=placeholders.rows)
            district_layer, district_ids = loaded.id, list(loaded.feature_ids)
    else:
        given = iter_mapping_csv(mapping_csv, encoding)  # type: ignore[arg-type]
        routes = [(c, u, n, 0, 1.0, ()) for c, u, n in given]
        if given_layer is not None:  # a team per feature of the layer: no column to learn from
            if given_layer not in names:
                raise DispatchError(f"--district-layer {given_layer!r} is not one of the layers {names}")
            choice = choices[names.index(given_layer)]
            loaded = load_layer(
                layers[names.index(given_layer)].path, given_layer, choice.id_property, choice.name_property
            )
            district_layer, district_ids = loaded.id, list(loaded.feature_ids)
    if district_agencies and district_layer is None:
        raise DispatchError("--district-agencies needs district teams: --district-layer (and --district-col with "
                            "--from-311)")  # fmt: skip
    teams = _team_units(routes, district_agencies) if district_layer is not None else set()
    document = _document(name, timezone, boundary, area_layer, choices, routes, sla, district_layer, district_ids,
                         teams, onboarding_notes)  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "layers").mkdir(exist_ok=True)
    for layer in layers:
        shutil.copyfile(layer.path, root / "layers" / f"{layer.name}.geojson")
    header = f"# {name}: written by `cityloop city init`; edit units, SLAs and rules, then `cityloop city lint`.\n"
    (root / "city.yaml").write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    pack = load_city_pack(root)
    summary = [(category, unit, support, share) for category, unit, _, support, share, _ in routes]
    linted = lint_city_pack(pack, min_width_m=min_width_m)
    return Onboarding(pack, choices, linted, summary, mapping, districts, onboarding_notes)


def _team_units(routes: list[tuple[str, str, str, int, float, tuple[str, ...]]], agencies: tuple[str, ...]) -> set[str]:
    """The units (as the data names them) that get a field team per district: ``agencies``, or every unit."""
    units = {unit for _, unit, *_ in routes}
    if not agencies:
        return units
    by_key = {" ".join(u.split()).casefold(): u for u in units}
    chosen, unknown = set(), []
    for agency in agencies:
        found = by_key.get(" ".join(agency.split()).casefold())
        if found is None:
            unknown.append(agency)
        else:
            chosen.add(found)
    if unknown:
        raise DispatchError(f"--district-agencies: {', '.join(map(repr, unknown))} handle no category here; the "
                            f"units are: {', '.join(sorted(units))}")  # fmt: skip
    return chosen


def _document(
    name: str,
    timezone: str,
    boundary: str | None,
    area_layer: str,
    choices: list[IdChoice],
    routes: list[tuple[str, str, str, int, float, tuple[str, ...]]],
    sla: Sla,
    district_layer: str | None,
    district_ids: list[str],
    teams: set[str],
    notes: list[str],
) -> dict[str, Any]:
    unit_ids: dict[str, str] = {}  # unit name in the data -> unit id
    unit_names: dict[str, str] = {}
    categories: list[dict[str, Any]] = []
    codes = {OTHER}
    targets = {"calendar", "working"}
    clock = sla.clock if sla.clock in targets else "working"
    for category, unit, unit_name, support, share, keywords in routes:
        if unit not in unit_ids:
            unit_id = slug(unit)
            while unit_id in {OPS_CENTRE, OTHER, *unit_ids.values()}:
                unit_id += "-x"
            unit_ids[unit] = unit_id
            unit_names[unit_id] = unit_name
        code = slug(category, 60)
        if code in codes:  # the city's own "Other" (or a repeat): name it after its unit, not other-2
            code = slug(f"{category} {unit_ids[unit]}", 60)
        while code in codes:
            code = f"{code}-2"
        codes.add(code)
        learned = f"Learned from {support} requests, {share:.0%} handled by {unit}. " if support else ""
        entry: dict[str, Any] = {
            "code": code,
            "name": category,
            "group": unit_ids[unit],
            "description": learned.strip() or f"Routed to {unit}.",
        }
        if keywords:
            entry["keywords"] = list(keywords)
        entry["sla"] = {"acknowledge": sla.acknowledge, "resolve": sla.resolve, "clock": clock}
        categories.append(entry)
    own_other = any(entry["name"].strip().casefold() == "other" for entry in categories)
    categories.append(
        {
            "code": OTHER,
            "name": "Other (not in the catalogue)" if own_other else "Other",
            "group": OTHER,
            "description": "Anything the catalogue does not name; the ops centre triages it.",
            "sla": {"acknowledge": sla.acknowledge, "resolve": sla.resolve, "clock": clock},
        }
    )
    units: list[dict[str, Any]] = [
        {
            "id": OPS_CENTRE,
            "name": f"{name} operations centre",
            "kind": "ops_centre",
            "groups": [OTHER],
            "area": {"layer": area_layer, "features": "*"},
        }
    ]
    in_data = {unit_id: unit for unit, unit_id in unit_ids.items()}
    for unit_id, unit_name in unit_names.items():
        if district_layer is None or in_data[unit_id] not in teams:
            units.append(
                {
                    "id": unit_id,
                    "name": unit_name,
                    "kind": "department",
                    "groups": [unit_id],
                    "area": {"layer": area_layer, "features": "*"},
                }
            )
            continue
        units.append({"id": unit_id, "name": unit_name, "kind": "department"})
        for feature in district_ids:
            units.append(
                {
                    "id": f"{unit_id}-{slug(feature)}",
                    "name": f"{unit_name}, {district_layer} {feature}",
                    "kind": "field_team",
                    "department": unit_id,
                    "groups": [unit_id],
                    "area": {"layer": district_layer, "features": [feature]},
                }
            )
    if district_layer is not None:
        notes.append(f"one field team per {district_layer} feature ({len(district_ids)} features) for "
                     f"{len(teams)} of {len(unit_names)} units; the others cover the whole city")  # fmt: skip
    document: dict[str, Any] = {
        "name": name,
        "version": "1",
        "timezone": timezone,
        "fallback_unit": OPS_CENTRE,
        "boundary_band_m": 25,
    }
    if boundary is not None:
        document["boundary"] = boundary
    document["layers"] = [
        {
            "id": c.layer,
            "file": f"layers/{c.layer}.geojson",
            "id_property": c.id_property,
            **({"name_property": c.name_property} if c.name_property else {}),
        }
        for c in choices
    ]
    document["categories"] = categories
    document["units"] = units
    return document
