"""City packs: a directory with ``city.yaml`` and the GeoJSON layers it names.

Loading validates everything a worker relies on and fails with an
:class:`InvalidCityPack` that names the file, the key and the problem.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from dispatch.connectors import CONNECTOR_TYPES, Connector
from dispatch.errors import InvalidCityPack
from dispatch.geometry import LocalProjection
from dispatch.layers import Layer, load_layer

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*$")
_CODE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


def parse_duration(value: Any) -> timedelta:
    """Parse ``"72h"``, ``"1d12h"``, ``"90m"`` or a number of hours into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(hours=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '4h' or '2d', got {value!r}")
    match = _DURATION_RE.match(value)
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like '4h', '90m' or '1d12h', got {value!r}")
    days, hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    result = timedelta(days=days, hours=hours, minutes=minutes)
    if result <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return result


def _checked_duration(value: Any) -> str:
    parse_duration(value)
    return str(value) if not isinstance(value, int | float) else f"{value}h"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
# SLA targets keep their text ("1d" means one working day on a working clock); checked here.
SlaDuration = Annotated[str, BeforeValidator(_checked_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaTargets(_Model):
    acknowledge: SlaDuration
    resolve: SlaDuration
    verify: SlaDuration | None = None
    clock: Literal["calendar", "working"] = "calendar"


class Category(_Model):
    """A service category; ``code``, ``name``, ``group``, ``description``, ``keywords`` and ``type`` are
    the Open311 GeoReport v2 service fields (``service_code``, ``service_name``, ...)."""

    code: str = Field(pattern=_CODE)
    name: str
    group: str = Field(pattern=_CODE)
    description: str = ""
    keywords: list[str] = []
    type: Literal["realtime", "batch", "blackbox"] = "realtime"
    sla: SlaTargets | None = None


class Area(_Model):
    layer: str
    features: list[str] | Literal["*"] = "*"


class Unit(_Model):
    id: str = Field(pattern=_CODE)
    name: str
    kind: Literal["department", "field_team", "ops_centre"] = "field_team"
    department: str | None = None
    categories: list[str] = []
    groups: list[str] = []
    area: Area | None = None
    capacity: int | None = Field(default=None, ge=1)
    backup: str | None = None
    connector: Connector | None = None  # the unit's own system (dispatch/connectors.py); docs/CONNECTORS.md


class LayerRef(_Model):
    id: str = Field(pattern=_CODE)
    file: str
    id_property: str
    name_property: str | None = None


class SensorKind(_Model):
    """How readings of one sensor kind become alarms.

    ``threshold``: static limits with hysteresis (open past ``open_at``, clear
    back past ``close_at``). ``adaptive``: a learnt daily pattern per sensor;
    ``adaptive`` holds its settings (see classifiers.anomaly.AdaptiveDetector).
    ``both``: an alarm while either holds.
    """

    category: str
    unit: str | None = None
    detector: Literal["threshold", "adaptive", "both"] = "threshold"
    direction: Literal["above", "below", "both"] = "above"
    open_at: float | None = None
    close_at: float | None = None
    adaptive: dict[str, float | int] = {}

    @model_validator(mode="after")
    def _hysteresis(self) -> SensorKind:
        if self.detector in ("threshold", "both"):
            if self.open_at is None or self.close_at is None:
                raise ValueError(f"a {self.detector!r} detector needs open_at and close_at")
            if self.direction == "both":
                raise ValueError("static limits need direction 'above' or 'below'")
        if self.open_at is not None and self.close_at is not None:
            if self.direction == "above" and not self.close_at < self.open_at:
                raise ValueError("close_at must be below open_at for direction 'above'")
            if self.direction == "below" and not self.close_at > self.open_at:
                raise ValueError("close_at must be above open_at for direction 'below'")
        return self


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class TimeWindow(_Model):
    """Local time of day in the city's time zone; ``start`` after ``end`` wraps past midnight."""

    start: time
    end: time
    days: list[Day] = []  # empty: every day; for a wrapping window, the day the window starts

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window is empty or the whole day; omit 'hours' instead")
        return self


class RuleMatch(_Model):
    """What a rule applies to; an empty list or a missing key matches everything."""

    categories: list[str] = []
    groups: list[str] = []
    area: Area | None = None
    sources: list[str] = []
    hours: TimeWindow | None = None


class Rule(_Model):
    """A routing rule. Higher ``priority`` is tried first (ties: declared order).

    Exactly one action decides the unit: ``assign`` a unit, or ``nearest_team_of`` a
    department (its nearest field team with spare capacity). A rule with neither only
    adds ``co_notify`` units to whatever decides, and never stops the search.
    """

    id: str = Field(pattern=_CODE)
    priority: int = 0
    description: str = ""
    match: RuleMatch = RuleMatch()
    assign: str | None = None
    nearest_team_of: str | None = None
    co_notify: list[str] = []

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        if self.assign is not None and self.nearest_team_of is not None:
            raise ValueError("give either 'assign' or 'nearest_team_of', not both")
        if self.assign is None and self.nearest_team_of is None and not self.co_notify:
            raise ValueError("a rule needs an action: 'assign', 'nearest_team_of' or 'co_notify'")
        return self

    @property
    def decides(self) -> bool:
        return self.assign is not None or self.nearest_team_of is not None


class WorkingHours(_Model):
    start: time = time(8, 0)
    end: time = time(18, 0)
    days: list[Day] = ["mon", "tue", "wed", "thu", "fri"]


class Calendar(_Model):
    """When the city works. ``at_close``: where a working-time deadline that falls exactly at closing time goes:
    it stays there (``closing``) or moves to the next opening (``next_opening``), as the city's own system does."""

    working_hours: WorkingHours = WorkingHours()
    holidays: list[str] = []
    at_close: Literal["closing", "next_opening"] = "closing"


class CityFile(_Model):
    """The schema of ``city.yaml``."""

    name: str
    version: str = "1"
    timezone: str = "UTC"
    calendar: Calendar = Calendar()
    categories: list[Category]
    units: list[Unit]
    layers: list[LayerRef]
    rules: list[Rule] = []
    fallback_unit: str
    boundary: str | None = None  # layer whose union is the city; default: the union of every layer
    boundary_band_m: float = Field(default=25.0, ge=0, le=5000)
    sensor_kinds: dict[str, SensorKind] = {}


@dataclass(frozen=True)
class CityPack:
    """A loaded, cross-checked city pack."""

    path: Path
    spec: CityFile
    layers: dict[str, Layer]
    version: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.spec.timezone)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lon, min_lat, max_lon, max_lat) over every layer."""
        boxes = np.array([shapely.total_bounds(layer.geometries) for layer in self.layers.values()])
        return (
            float(boxes[:, 0].min()),
            float(boxes[:, 1].min()),
            float(boxes[:, 2].max()),
            float(boxes[:, 3].max()),
        )

    @cached_property
    def projection(self) -> LocalProjection:
        """The plane in metres the dispatcher measures distances on (see :mod:`dispatch.geometry`)."""
        return LocalProjection.around(*self.bounds)

    def category(self, code: str) -> Category | None:
        return self._categories.get(code)

    def unit(self, unit_id: str) -> Unit | None:
        return self._units.get(unit_id)

    @cached_property
    def ordered_rules(self) -> tuple[tuple[int, Rule], ...]:
        """(declared index, rule), in the order they are tried: priority high to low, then as declared."""
        indexed = list(enumerate(self.spec.rules))
        return tuple(sorted(indexed, key=lambda item: (-item[1].priority, item[0])))

    def teams_of(self, department: str) -> list[Unit]:
        """Field teams of a department, in declared order."""
        return self._teams.get(department, [])

    @cached_property
    def _teams(self) -> dict[str, list[Unit]]:
        teams: dict[str, list[Unit]] = {}
        for unit in self.spec.units:
            if unit.kind == "field_team" and unit.department is not None:
                teams.setdefault(unit.department, []).append(unit)
        return teams

    def handles(self, unit: Unit, code: str) -> bool:
        """Whether ``unit`` takes category ``code``, directly or through the category's group."""
        category = self.category(code)
        return category is not None and (code in unit.categories or category.group in unit.groups)

    @cached_property
    def _categories(self) -> dict[str, Category]:
        return {c.code: c for c in self.spec.categories}

    @cached_property
    def _units(self) -> dict[str, Unit]:
        return {u.id: u for u in self.spec.units}


def load_city_pack(path: str | Path) -> CityPack:
    """Load and validate a city pack directory."""
    root = Path(path)
    city_file = root / "city.yaml"
    if not root.is_dir():
        raise InvalidCityPack(str(root), "-", "not a directory")
    if not city_file.is_file():
        raise InvalidCityPack(str(city_file), "-", "missing; a city pack needs a city.yaml")
    raw_bytes = city_file.read_bytes()
    try:
        document = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise InvalidCityPack(str(city_file), "-", f"not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidCityPack(str(city_file), "-", "must be a mapping at the top level")
    try:
        spec = CityFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        # a connector's errors carry its type as a step of the path (the union's tag): leave it out of the key
        loc = [part for i, part in enumerate(first["loc"])
               if not (part in CONNECTOR_TYPES and i and first["loc"][i - 1] == "connector")]  # fmt: skip
        key = ".".join(str(part) for part in loc) or "-"
        raise InvalidCityPack(str(city_file), key, first["msg"].removeprefix("Value error, ")) from None
    _check_references(spec, str(city_file))
    digest = hashlib.sha256(raw_bytes)
    layers: dict[str, Layer] = {}
    for ref in spec.layers:
        layer_path = root / ref.file
        layers[ref.id] = load_layer(layer_path, ref.id, ref.id_property, ref.name_property)
        digest.update(layer_path.read_bytes())
    for index, unit in enumerate(spec.units):
        _check_features(unit.area, layers, str(city_file), f"units.{index}.area.features", f"unit {unit.id!r}")
    for index, rule in enumerate(spec.rules):
        where = f"rules.{index}.match.area.features"
        _check_features(rule.match.area, layers, str(city_file), where, f"rule {rule.id!r}")
    version = f"{spec.version}+{digest.hexdigest()[:10]}"
    return CityPack(path=root, spec=spec, layers=layers, version=version)


def _check_references(spec: CityFile, file: str) -> None:
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCityPack(file, "timezone", f"unknown time zone {spec.timezone!r}") from None
    codes = [c.code for c in spec.categories]
    _no_duplicates(codes, file, "categories", "category code")
    unit_ids = [u.id for u in spec.units]
    _no_duplicates(unit_ids, file, "units", "unit id")
    layer_ids = [layer.id for layer in spec.layers]
    _no_duplicates(layer_ids, file, "layers", "layer id")
    groups = {c.group for c in spec.categories}
    if spec.fallback_unit not in unit_ids:
        raise InvalidCityPack(file, "fallback_unit", f"unit {spec.fallback_unit!r} is not defined")
    for index, unit in enumerate(spec.units):
        where = f"units.{index}"
        for code in unit.categories:
            if code not in codes:
                raise InvalidCityPack(file, f"{where}.categories", f"unknown category {code!r}")
        for group in unit.groups:
            if group not in groups:
                raise InvalidCityPack(file, f"{where}.groups", f"unknown category group {group!r}")
        for category in getattr(unit.connector, "service_codes", {}):
            if category not in codes:
                raise InvalidCityPack(file, f"{where}.connector.service_codes", f"unknown category {category!r}")
        if unit.backup is not None and unit.backup not in unit_ids:
            raise InvalidCityPack(file, f"{where}.backup", f"unknown unit {unit.backup!r}")
        if unit.department is not None and unit.department not in unit_ids:
            raise InvalidCityPack(file, f"{where}.department", f"unknown unit {unit.department!r}")
        if unit.area is not None and unit.area.layer not in layer_ids:
            raise InvalidCityPack(file, f"{where}.area.layer", f"unknown layer {unit.area.layer!r}")
    if spec.boundary is not None and spec.boundary not in layer_ids:
        raise InvalidCityPack(file, "boundary", f"unknown layer {spec.boundary!r}")
    _check_rules(spec, file, set(codes), groups, set(unit_ids), set(layer_ids))
    for kind, sensor in spec.sensor_kinds.items():
        if sensor.category not in codes:
            raise InvalidCityPack(file, f"sensor_kinds.{kind}.category", f"unknown category {sensor.category!r}")


def _check_rules(
    spec: CityFile, file: str, codes: set[str], groups: set[str], unit_ids: set[str], layer_ids: set[str]
) -> None:
    _no_duplicates([rule.id for rule in spec.rules], file, "rules", "rule id")
    kinds = {unit.id: unit.kind for unit in spec.units}
    departments_with_teams = {unit.department for unit in spec.units if unit.kind == "field_team"}
    for index, rule in enumerate(spec.rules):
        where = f"rules.{index}"
        for code in rule.match.categories:
            if code not in codes:
                raise InvalidCityPack(file, f"{where}.match.categories", f"unknown category {code!r}")
        for group in rule.match.groups:
            if group not in groups:
                raise InvalidCityPack(file, f"{where}.match.groups", f"unknown category group {group!r}")
        if rule.match.area is not None and rule.match.area.layer not in layer_ids:
            raise InvalidCityPack(file, f"{where}.match.area.layer", f"unknown layer {rule.match.area.layer!r}")
        if rule.assign is not None and rule.assign not in unit_ids:
            raise InvalidCityPack(file, f"{where}.assign", f"unknown unit {rule.assign!r}")
        if rule.nearest_team_of is not None:
            department = rule.nearest_team_of
            if kinds.get(department) != "department":
                raise InvalidCityPack(file, f"{where}.nearest_team_of", f"{department!r} is not a department unit")
            if department not in departments_with_teams:
                raise InvalidCityPack(file, f"{where}.nearest_team_of", f"department {department!r} has no field team")
        for unit_id in rule.co_notify:
            if unit_id not in unit_ids:
                raise InvalidCityPack(file, f"{where}.co_notify", f"unknown unit {unit_id!r}")


def _check_features(area: Area | None, layers: dict[str, Layer], file: str, key: str, owner: str) -> None:
    if area is None or area.features == "*":
        return
    known = set(layers[area.layer].feature_ids)
    missing = [f for f in area.features if f not in known]
    if missing:
        raise InvalidCityPack(file, key, f"{owner} names features {missing} not in layer {area.layer!r}")


def _no_duplicates(values: list[str], file: str, key: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise InvalidCityPack(file, f"{key}.{index}", f"duplicate {what} {value!r}")
        seen.add(value)
