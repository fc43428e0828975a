"""Wire records of the public stream contract, and their strict decoders.

A decoder takes the exact bytes of a Kafka record and returns a typed record or
raises :class:`Rejected` with a reason code (a small fixed set, safe as a metric
label) and a sentence that names the field and the problem. Unknown fields are
ignored (tolerant reader) so producers can add fields without breaking workers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_RECORD_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000  # Open311 GeoReport v2 limit on a request's description
MAX_ID_CHARS = 128
MAX_SHORT_CHARS = 256
MAX_URL_CHARS = 2048
# Latitudes Redis GEO can index (the Web Mercator square): the open-incident index would refuse any other, so a
# record beyond them is dead-lettered here with that reason instead of failing its batch in the merge.
MAX_LAT = 85.05112878

_ID_RE = re.compile(r"^[\x21-\x7e\u00a0-\uffff]+$")  # printable, no spaces or control chars

# Reason codes: bounded, documented in docs/CONTRACT.md, used as metric labels.
REASON_CODES = (
    "too_large",
    "bad_encoding",
    "invalid_json",
    "duplicate_key",
    "non_finite",
    "too_deep",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "too_long",
    "invalid_id",
    "bad_timestamp",
    "future_timestamp",
)


class Rejected(ValueError):
    """A record that breaks the stream contract."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Report:
    """A citizen report: free text and a location, from any channel.

    The location is a point, or only an address (``address`` or ``address_id``; Open311 allows either instead of
    lat/long): such a report has ``lat`` and ``lon`` None and waits in triage for a person to place it.
    """

    report_id: str
    source: str
    text: str
    lat: float | None
    lon: float | None
    reported_at: datetime
    service_code: str | None = None
    address: str | None = None
    media_url: str | None = None
    reporter: dict[str, str] | None = field(default=None, repr=False)
    address_id: str | None = None

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one sensor."""

    sensor_id: str
    kind: str
    value: float
    lat: float
    lon: float
    observed_at: datetime
    unit: str | None = None


def _reject_constant(name: str) -> Any:
    raise Rejected("non_finite", f"{name} is not a finite number; JSON has no NaN or Infinity")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Rejected("duplicate_key", f"key {key!r} appears more than once")
            seen.add(key)
    return result


def _fast(raw: bytes) -> dict[str, Any] | None:
    """The common case at C speed: a flat JSON object that cannot hide a duplicate key.

    orjson refuses NaN, Infinity, invalid UTF-8 and bad JSON but keeps the last
    of duplicate keys. In bytes with no backslash every string, key or value,
    is written between exactly two quote characters, so a flat object (no
    nested object or array) holds ``quotes / 2 - string values`` keys as
    written; if that equals the keys orjson kept, none was repeated. Anything
    else (escapes, nesting, any orjson error) returns None: the strict parser
    decides, with its precise reasons.
    """
    if b"\\" in raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    strings = 0
    for item in value.values():
        kind = type(item)
        if kind is str:
            strings += 1
        elif kind is dict or kind is list:
            return None
    if raw.count(b'"') != 2 * (len(value) + strings):
        return None
    return value


def parse_object(raw: bytes | None) -> dict[str, Any]:
    """Parse the bytes of one record into a JSON object, strictly."""
    if raw is None:
        raise Rejected("not_object", "record has no value (null/tombstone)")
    if len(raw) > MAX_RECORD_BYTES:
        raise Rejected("too_large", f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}")
    fast = _fast(raw)
    if fast is not None:
        return fast
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("bad_encoding", f"record is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected("too_deep", "record nests too deeply to parse") from None
    except json.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise Rejected("not_object", f"record is {_json_type(value)}, not a JSON object")
    return value


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise Rejected("missing_field", f"required field {name!r} is missing")
    return obj[name]


def _string(obj: dict[str, Any], name: str, *, limit: int, required: bool = True) -> str | None:
    value = _required(obj, name) if required else obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{name} must be a string, not {_json_type(value)}")
    if len(value) > limit:
        raise Rejected("too_long", f"{name} is {len(value)} characters; the limit is {limit}")
    if required and not value.strip():
        raise Rejected("missing_field", f"{name} is empty")
    return value


def _identifier(obj: dict[str, Any], name: str) -> str:
    value = _string(obj, name, limit=MAX_ID_CHARS)
    assert value is not None
    if not _ID_RE.match(value):
        raise Rejected("invalid_id", f"{name} must be printable with no spaces, got {value!r}")
    return value


def _number(obj: dict[str, Any], name: str, low: float | None = None, high: float | None = None) -> float:
    value = _required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected("wrong_type", f"{name} must be a number, not {_json_type(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise Rejected("non_finite", f"{name} is not a finite number")
    if (low is not None and number < low) or (high is not None and number > high):
        raise Rejected("out_of_range", f"{name} must be between {low} and {high}, got {number}")
    return number


def _timestamp(obj: dict[str, Any], name: str, now: datetime, max_skew: timedelta) -> datetime:
    value = _string(obj, name, limit=64)
    assert value is not None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected("bad_timestamp", f"{name} {value!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise Rejected("bad_timestamp", f"{name} {value!r} has no UTC offset; add Z or +hh:mm")
    if moment - now > max_skew:
        raise Rejected(
            "future_timestamp",
            f"{name} {value} is more than {max_skew} ahead of the worker's clock ({now.isoformat()})",
        )
    return moment.astimezone(UTC)


def _json_type(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _reporter(obj: dict[str, Any]) -> dict[str, str] | None:
    value = obj.get("reporter")
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise Rejected("wrong_type", f"reporter must be an object or a string, not {_json_type(value)}")
    result: dict[str, str] = {}
    for key in ("email", "first_name", "last_name", "name", "phone", "device_id"):
        text = _string(value, key, limit=MAX_SHORT_CHARS, required=False)
        if text is not None:
            result[key] = text
    return result or None


def decode_point(obj: dict[str, Any]) -> tuple[float, float]:
    """``lat`` and ``lon`` of a JSON object, both required, within what Redis GEO can index."""
    lat, lon = _point(obj)
    assert lat is not None and lon is not None
    return lat, lon


def _point(obj: dict[str, Any], required: bool = True) -> tuple[float | None, float | None]:
    """``lat`` and ``lon``: both, or (when not required) neither."""
    if not required and obj.get("lat") is None and obj.get("lon") is None:
        return None, None
    try:
        lat = _number(obj, "lat", -MAX_LAT, MAX_LAT)
    except Rejected as exc:
        if exc.code != "out_of_range":
            raise
        raise Rejected(exc.code, f"{exc.reason} (beyond +-{MAX_LAT} no map or Redis GEO index can place it)") from None
    return lat, _number(obj, "lon", -180.0, 180.0)


def decode_report(raw: bytes | None, *, now: datetime, max_skew: timedelta) -> Report:
    """Decode and validate one ``reports`` record."""
    obj = parse_object(raw)
    report_id = _identifier(obj, "report_id")
    source = _string(obj, "source", limit=64)
    text = _string(obj, "text", limit=MAX_TEXT_CHARS)
    address = _string(obj, "address", limit=MAX_SHORT_CHARS * 2, required=False)
    address_id = _string(obj, "address_id", limit=MAX_ID_CHARS, required=False)
    has_address = bool((address or "").strip() or (address_id or "").strip())
    if not has_address and obj.get("lat") is None and obj.get("lon") is None:
        raise Rejected("missing_field", "a report needs lat and lon, or an address or address_id to be located by")
    lat, lon = _point(obj, required=not has_address)
    reported_at = _timestamp(obj, "reported_at", now, max_skew)
    service_code = _string(obj, "service_code", limit=MAX_ID_CHARS, required=False)
    media_url = _string(obj, "media_url", limit=MAX_URL_CHARS, required=False)
    assert source is not None and text is not None
    return Report(
        report_id=report_id,
        source=source,
        text=text,
        lat=lat,
        lon=lon,
        reported_at=reported_at,
        service_code=service_code or None,
        address=address or None,
        media_url=media_url or None,
        reporter=_reporter(obj),
        address_id=address_id or None,
    )


def decode_reading(raw: bytes | None, *, now: datetime, max_skew: timedelta) -> Reading:
    """Decode and validate one ``readings`` record."""
    obj = parse_object(raw)
    sensor_id = _identifier(obj, "sensor_id")
    kind = _identifier(obj, "kind")
    value = _number(obj, "value")
    lat, lon = _point(obj)
    assert lat is not None and lon is not None
    observed_at = _timestamp(obj, "observed_at", now, max_skew)
    unit = _string(obj, "unit", limit=32, required=False)
    return Reading(
        sensor_id=sensor_id,
        kind=kind,
        value=value,
        lat=lat,
        lon=lon,
        observed_at=observed_at,
        unit=unit or None,
    )
