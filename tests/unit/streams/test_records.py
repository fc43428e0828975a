"""The decoders accept the contract and refuse everything else with a precise reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from streams.records import MAX_RECORD_BYTES, Rejected, decode_reading, decode_report, parse_object

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SKEW = timedelta(days=1)


REPORT: dict[str, object] = {
    "report_id": "r-1",
    "source": "app",
    "text": "pothole outside number 4",
    "lat": 51.99,
    "lon": 5.06,
    "reported_at": "2026-11-26T11:59:00Z",
}
READING: dict[str, object] = {
    "sensor_id": "wl-7",
    "kind": "water_level",
    "value": 12.5,
    "unit": "cm",
    "lat": 51.99,
    "lon": 5.06,
    "observed_at": "2026-11-26T11:59:00+01:00",
}


def changed(base: dict[str, object], changes: dict[str, object]) -> bytes:
    """``base`` with fields replaced; a value of ``...`` removes the field."""
    record = {**base, **changes}
    return json.dumps({key: value for key, value in record.items() if value is not ...}).encode()


def report(**changes: object) -> bytes:
    return changed(REPORT, changes)


def reading(**changes: object) -> bytes:
    return changed(READING, changes)


def test_a_valid_report_decodes_with_utc_time():
    """Every contract field arrives typed; the time is normalised to UTC."""
    decoded = decode_report(report(service_code="pothole", address="Main St 4"), now=NOW, max_skew=SKEW)
    assert decoded.report_id == "r-1"
    assert decoded.service_code == "pothole"
    assert decoded.reported_at == datetime(2026, 11, 26, 11, 59, tzinfo=UTC)
    assert decoded.lat == pytest.approx(51.99)


def test_a_report_located_by_an_address_only_decodes_without_a_point():
    """Open311 allows an address_string or address_id instead of lat/long: the report decodes, unlocated."""
    by_address = decode_report(report(lat=..., lon=..., address="Stationsplein 1"), now=NOW, max_skew=SKEW)
    assert (by_address.lat, by_address.lon, by_address.located) == (None, None, False)
    by_id = decode_report(report(lat=None, lon=None, address_id="BAG-0344200000123"), now=NOW, max_skew=SKEW)
    assert by_id.address_id == "BAG-0344200000123" and not by_id.located
    edge = decode_report(report(lat=-85.05112878, lon=180), now=NOW, max_skew=SKEW)
    assert edge.located and edge.lat == -85.05112878


def test_unknown_fields_are_ignored():
    """A producer may add fields (tolerant reader)."""
    assert decode_report(report(extra={"x": 1}), now=NOW, max_skew=SKEW).report_id == "r-1"


def test_a_valid_reading_decodes_with_offset_applied():
    """Offsets are honoured: 11:59+01:00 is 10:59 UTC."""
    decoded = decode_reading(reading(), now=NOW, max_skew=SKEW)
    assert decoded.observed_at == datetime(2026, 11, 26, 10, 59, tzinfo=UTC)
    assert decoded.value == 12.5


BAD_REPORTS = [
    (b"", "invalid_json", "not JSON"),
    (b"{not json", "invalid_json", "not JSON"),
    (b"\xff\xfe\x00garbage", "bad_encoding", "UTF-8"),
    (b"[1, 2]", "not_object", "array"),
    (b'"just text"', "not_object", "a string"),
    (b"x" * (MAX_RECORD_BYTES + 1), "too_large", "limit"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "too_deep", "nests"),
    (b'{"report_id": "a", "report_id": "b"}', "duplicate_key", "report_id"),
    (b'{"report_id":"a","report_id" :"b"}', "duplicate_key", "report_id"),
    (b'{"report_id":"a","\\u0072eport_id":"b"}', "duplicate_key", "report_id"),  # one key spelt two ways
    (b'{"report_id":"a","reporter":{"name":"x","name":"y"}}', "duplicate_key", "name"),
    (report(lat=float("nan")).replace(b"NaN", b"NaN"), "non_finite", "finite"),
    (report(lon=float("inf")), "non_finite", "finite"),
    (report(report_id=...), "missing_field", "report_id"),
    (report(report_id=""), "missing_field", "report_id"),
    (report(report_id="has space"), "invalid_id", "report_id"),
    (report(report_id="x" * 129), "too_long", "report_id"),
    (report(report_id=17), "wrong_type", "report_id must be a string"),
    (report(text=...), "missing_field", "text"),
    (report(text="   "), "missing_field", "text is empty"),
    (report(text="a" * 4001), "too_long", "text is 4001 characters; the limit is 4000"),
    (report(lat="51.9"), "wrong_type", "lat must be a number"),
    (report(lat=True), "wrong_type", "lat must be a number"),
    (report(lat=90.5), "out_of_range", "lat must be between -85.05112878 and 85.05112878"),
    (report(lat=85.06), "out_of_range", "no map or Redis GEO index can place it"),  # a real latitude, not indexable
    (report(lon=-180.01), "out_of_range", "lon must be between -180.0 and 180.0"),
    (report(lat=None), "missing_field", "lat"),
    (report(lat=..., lon=...), "missing_field", "lat and lon, or an address or address_id"),
    (report(lat=..., lon=..., address="  "), "missing_field", "lat and lon, or an address"),
    (report(lon=..., address="Main St 1"), "missing_field", "lon"),  # half a point is not a location
    (report(lat=..., lon=..., address_id=7), "wrong_type", "address_id must be a string"),
    (report(reported_at="yesterday"), "bad_timestamp", "reported_at"),
    (report(reported_at="2026-11-26T11:59:00"), "bad_timestamp", "no UTC offset"),
    (report(reported_at="2027-01-01T00:00:00Z"), "future_timestamp", "ahead of the worker's clock"),
    (report(service_code=["pothole"]), "wrong_type", "service_code must be a string"),
    (report(reporter=5), "wrong_type", "reporter"),
    (report(reporter={"email": 5}), "wrong_type", "email"),
]


@pytest.mark.parametrize(("raw", "code", "words"), BAD_REPORTS)
def test_bad_reports_are_rejected_with_a_reason_naming_the_problem(raw: bytes, code: str, words: str):
    """Each kind of bad input gets its own reason code and a sentence naming the field."""
    with pytest.raises(Rejected) as caught:
        decode_report(raw, now=NOW, max_skew=SKEW)
    assert caught.value.code == code
    assert words in caught.value.reason


BAD_READINGS = [
    (reading(value="high"), "wrong_type", "value must be a number"),
    (reading(value=...), "missing_field", "value"),
    (reading(sensor_id=...), "missing_field", "sensor_id"),
    (reading(kind="water level"), "invalid_id", "kind"),
    (reading(lat=-91), "out_of_range", "lat"),
    (reading(lat=-85.1), "out_of_range", "Redis GEO"),
    (reading(lat=..., lon=...), "missing_field", "lat"),  # a sensor has no address to wait on
    (reading(observed_at=1764158400), "wrong_type", "observed_at must be a string"),
    (reading(unit=7), "wrong_type", "unit"),
]


@pytest.mark.parametrize(("raw", "code", "words"), BAD_READINGS)
def test_bad_readings_are_rejected_with_a_reason_naming_the_problem(raw: bytes, code: str, words: str):
    """Readings get the same strictness as reports."""
    with pytest.raises(Rejected) as caught:
        decode_reading(raw, now=NOW, max_skew=SKEW)
    assert caught.value.code == code
    assert words in caught.value.reason


def test_null_value_is_rejected():
    """A tombstone (no value) is not a report."""
    with pytest.raises(Rejected) as caught:
        parse_object(None)
    assert caught.value.code == "not_object"
