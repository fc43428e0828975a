"""The optional fields a report carries reach the incident as sent, each limit holds at the limit and refuses one
past it, and each refusal names the field and what was wrong, word for word. Written to kill the mutants mutmut
makes of streams/records.py (docs/TESTING.md)."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from streams.records import MAX_RECORD_BYTES, Rejected, decode_reading, decode_report, parse_object
from tests.unit.streams.test_records import NOW, READING, REPORT, SKEW, changed


def report(**changes: object):
    return decode_report(changed(REPORT, changes), now=NOW, max_skew=SKEW)


def refusal(raw: bytes | None, reading: bool = False) -> tuple[str, str]:
    with pytest.raises(Rejected) as caught:
        (decode_reading if reading else decode_report)(raw, now=NOW, max_skew=SKEW)
    return caught.value.code, caught.value.reason


def test_the_reporter_is_kept_field_by_field_and_a_bare_string_is_a_name():
    whole = {
        "email": "a@b.nl",
        "first_name": "Ana",
        "last_name": "Jansen",
        "name": "Ana J.",
        "phone": "+31 6 1234",
        "device_id": "d-9",
    }
    assert report(reporter={**whole, "shoe_size": "42"}).reporter == whole  # unknown keys are not kept
    assert report(reporter="Ana").reporter == {"name": "Ana"}
    assert report(reporter={"phone": None, "email": "a@b.nl"}).reporter == {"email": "a@b.nl"}
    assert report(reporter={}).reporter is None and report().reporter is None
    assert report(reporter={"name": ""}).reporter == {"name": ""}  # given, though empty: nothing is required
    assert report(reporter={"name": "n" * 256}).reporter == {"name": "n" * 256}
    assert refusal(changed(REPORT, {"reporter": {"name": "n" * 257}})) == (
        "too_long",
        "name is 257 characters; the limit is 256",
    )
    assert refusal(changed(REPORT, {"reporter": 7})) == (
        "wrong_type",
        "reporter must be an object or a string, not a number",
    )


def test_media_url_service_code_and_address_are_kept_within_their_limits():
    url = "https://photos.example/" + "p" * (2048 - 23)
    decoded = report(media_url=url, service_code="pothole", address="a" * 512, address_id="adr-7")
    assert (decoded.media_url, decoded.service_code, decoded.address, decoded.address_id) == (
        url,
        "pothole",
        "a" * 512,
        "adr-7",
    )
    assert report(media_url="").media_url is None
    assert refusal(changed(REPORT, {"media_url": url + "p"})) == (
        "too_long",
        "media_url is 2049 characters; the limit is 2048",
    )
    assert refusal(changed(REPORT, {"address": "a" * 513})) == (
        "too_long",
        "address is 513 characters; the limit is 512",
    )
    assert report(source="s" * 64).source == "s" * 64
    assert refusal(changed(REPORT, {"source": "s" * 65})) == ("too_long", "source is 65 characters; the limit is 64")


def test_a_point_is_both_coordinates_or_with_an_address_neither():
    assert refusal(changed(REPORT, {"lat": ...})) == ("missing_field", "required field 'lat' is missing")
    assert refusal(changed(REPORT, {"lon": None})) == ("missing_field", "required field 'lon' is missing")
    assert refusal(changed(REPORT, {"lat": ..., "lon": ...})) == (
        "missing_field",
        "a report needs lat and lon, or an address or address_id to be located by",
    )
    addressed = {"address": "Oudegracht 1", "lat": ...}
    assert refusal(changed(REPORT, addressed)) == (
        "missing_field",
        "required field 'lat' is missing",
    )  # half a point is refused
    located = report(address="Oudegracht 1", lat=..., lon=...)
    assert (located.lat, located.lon, located.address) == (None, None, "Oudegracht 1")


def test_numbers_are_finite_and_say_what_they_were_instead():
    assert refusal(changed(REPORT, {"lat": "52"})) == ("wrong_type", "lat must be a number, not a string")
    assert refusal(changed(REPORT, {"lon": True})) == ("wrong_type", "lon must be a number, not a boolean")
    assert refusal(changed(READING, {"value": [1]}), reading=True) == (
        "wrong_type",
        "value must be a number, not an array",
    )
    assert refusal(changed(READING, {"value": {}}), reading=True) == (
        "wrong_type",
        "value must be a number, not an object",
    )
    assert refusal(changed(REPORT, {"text": 5})) == ("wrong_type", "text must be a string, not a number")
    assert refusal(changed(REPORT, {"text": 5.5})) == ("wrong_type", "text must be a string, not a number")
    # 1e999 is valid JSON that Python reads as infinity: refused as not finite, not as out of range
    raw = changed(READING, {"value": 0}).replace(b'"value": 0', b'"value": 1e999')
    assert refusal(raw, reading=True) == ("non_finite", "value is not a finite number")


def test_the_time_limit_and_the_skew_edge():
    assert report(reported_at=(NOW + SKEW).isoformat()).reported_at == NOW + SKEW  # exactly the skew: accepted
    late = (NOW + SKEW + timedelta(seconds=1)).isoformat()
    assert refusal(changed(REPORT, {"reported_at": late}))[0] == "future_timestamp"
    padded = "2026-11-26T11:59:00.000000+00:00" + " " * 32  # 64 characters: read, then refused as no time
    assert len(padded) == 64 and refusal(changed(REPORT, {"reported_at": padded}))[0] == "bad_timestamp"
    assert refusal(changed(REPORT, {"reported_at": padded + " "})) == (
        "too_long",
        "reported_at is 65 characters; the limit is 64",
    )
    assert report(reported_at="2026-11-26T13:59:00+02:00").reported_at.utcoffset() == timedelta(0)


def test_a_repeated_key_is_named():
    raw = b'{"report_id": "r-1", "source": "app", "text": "t\\u00e9", "source": "web", "lat": 1, "lon": 2}'
    assert refusal(raw) == ("duplicate_key", "key 'source' appears more than once")  # the repeated one, not the first


@pytest.mark.parametrize("strings", [0, 1, 2, 3])
@pytest.mark.parametrize("repeated", ["lat", "text"])
def test_a_repeated_key_is_refused_whatever_else_the_record_holds(strings: int, repeated: str):
    """The fast path (orjson keeps the last of repeated keys) must never let one through: flat records without a
    backslash, with 0-3 other string values, a number or a string repeated."""
    fields = [f'"s{i}": "v{i}"' for i in range(strings)] + ['"n": 1']
    fields.append('"lat": 1' if repeated == "lat" else '"text": "a"')
    fields.append('"lat": 2' if repeated == "lat" else '"text": "b"')
    raw = ("{" + ", ".join(fields) + "}").encode()
    assert b"\\" not in raw
    with pytest.raises(Rejected) as caught:
        parse_object(raw)
    assert (caught.value.code, caught.value.reason) == ("duplicate_key", f"key {repeated!r} appears more than once")


def test_the_record_level_refusals_say_what_was_wrong():
    assert refusal(None) == ("not_object", "record has no value (null/tombstone)")
    assert refusal(b"[" * 20_000 + b"]" * 20_000) == ("too_deep", "record nests too deeply to parse")
    nan = changed(REPORT, {"lat": 0}).replace(b'"lat": 0', b'"lat": NaN')
    assert refusal(nan) == ("non_finite", "NaN is not a finite number; JSON has no NaN or Infinity")
    text_nan = changed(REPORT, {"text": 0}).replace(b'"text": 0', b'"text": -Infinity')  # not a number field
    assert refusal(text_nan) == ("non_finite", "-Infinity is not a finite number; JSON has no NaN or Infinity")
    exception = Rejected("too_long", "text is 5000 characters; the limit is 4000")
    assert str(exception) == exception.reason  # what a log line or a traceback shows


def test_a_record_of_exactly_the_size_limit_is_read():
    base = changed(REPORT, {"pad": ""})
    raw = base.replace(b'"pad": ""', b'"pad": "' + b"p" * (MAX_RECORD_BYTES - len(base)) + b'"')
    assert len(raw) == MAX_RECORD_BYTES
    assert decode_report(raw, now=NOW, max_skew=SKEW).report_id == "r-1"
    assert refusal(raw.replace(b'"pad": "', b'"pad": "p'))[0] == "too_large"


def test_a_reading_s_unit_is_optional_and_short():
    assert decode_reading(changed(READING, {"unit": ...}), now=NOW, max_skew=SKEW).unit is None
    assert decode_reading(changed(READING, {"unit": "u" * 32}), now=NOW, max_skew=SKEW).unit == "u" * 32
    assert refusal(changed(READING, {"unit": "u" * 33}), reading=True) == (
        "too_long",
        "unit is 33 characters; the limit is 32",
    )


def test_times_come_back_in_utc_itself():
    """Not merely at offset 0: the zone object is UTC, whatever zone the machine runs in."""
    assert report(reported_at="2026-11-26T13:59:00+02:00").reported_at.tzinfo is UTC
