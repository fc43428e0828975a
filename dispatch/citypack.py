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

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from dispatch.errors import InvalidCityPack
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
    code: str = Field(pattern=_CODE)
    name: str
    group: str = Field(pattern=_CODE)
    description: str = ""
    keywords: list[str] = []
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


class WorkingHours(_Model):
    start: time = time(8, 0)
    end: time = time(18, 0)
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]


class Calendar(_Model):
    working_hours: WorkingHours = WorkingHours()
    holidays: list[str] = []


class CityFile(_Model):
    """The schema of ``city.yaml``."""

    name: str
    version: str = "1"
    timezone: str = "UTC"
    calendar: Calendar = Calendar()
    categories: list[Category]
    units: list[Unit]
    layers: list[LayerRef]
    fallback_unit: str
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

    def category(self, code: str) -> Category | None:
        return self._categories.get(code)

    def unit(self, unit_id: str) -> Unit | None:
        return self._units.get(unit_id)

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
        key = ".".join(str(part) for part in first["loc"]) or "-"
        raise InvalidCityPack(str(city_file), key, first["msg"]) from None
    _check_references(spec, str(city_file))
    digest = hashlib.sha256(raw_bytes)
    layers: dict[str, Layer] = {}
    for ref in spec.layers:
        layer_path = root / ref.file
        layers[ref.id] = load_layer(layer_path, ref.id, ref.id_property, ref.name_property)
        digest.update(layer_path.read_bytes())
    for index, unit in enumerate(spec.units):
        if unit.area is None or unit.area.features == "*":
            continue
        known = set(layers[unit.area.layer].feature_ids)
        missing = [f for f in unit.area.features if f not in known]
        if missing:
            raise InvalidCityPack(
                str(city_file),
                f"units.{index}.area.features",
                f"unit {unit.id!r} names features {missing} not in layer {unit.area.layer!r}",
            )
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
        if unit.backup is not None and unit.backup not in unit_ids:
            raise InvalidCityPack(file, f"{where}.backup", f"unknown unit {unit.backup!r}")
        if unit.department is not None and unit.department not in unit_ids:
            raise InvalidCityPack(file, f"{where}.department", f"unknown unit {unit.department!r}")
        if unit.area is not None and unit.area.layer not in layer_ids:
            raise InvalidCityPack(file, f"{where}.area.layer", f"unknown layer {unit.area.layer!r}")
    for kind, sensor in spec.sensor_kinds.items():
        if sensor.category not in codes:
            raise InvalidCityPack(file, f"sensor_kinds.{kind}.category", f"unknown category {sensor.category!r}")


def _no_duplicates(values: list[str], file: str, key: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise InvalidCityPack(file, f"{key}.{index}", f"duplicate {what} {value!r}")
        seen.add(value)
