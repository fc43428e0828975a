"""What an Open311 client sends, read the way GeoReport v2 means it: UTF-8 text, an empty argument the same as an
absent one, coordinates Redis can index, times that cannot overflow.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.datastructures import UploadFile

from streams.api.errors import ApiError
from streams.ids import parse_iso
from streams.records import MAX_LAT

MAX_DESCRIPTION = 4000
MAX_FIELDS = 200
LIMITS = {"address_string": 512, "address_id": 128, "email": 254, "first_name": 100, "last_name": 100, "phone": 64,
          "device_id": 128, "account_id": 128, "media_url": 2048, "service_code": 64, "jurisdiction_id": 128,
          "api_key": 256, "service_request_id": 128, "status": 64, "update_id": 128, "update_id_ext": 128,
          "updated_datetime": 64}  # fmt: skip
# Times a query may name: wide enough for any real request, narrow enough that a 90-day window never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields, decoded as UTF-8 (GeoReport v2 assumes it); the last value of a repeated field wins.

    Starlette reads a urlencoded body as Latin-1, so ``curl -d "description=café"`` (raw UTF-8 bytes) would be
    stored as ``cafÃ©``; the body is parsed here instead. Multipart fields are UTF-8 unless their part says otherwise.
    """
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/x-www-form-urlencoded"):
        body = await request.body()
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                              encoding="utf-8", errors="strict")  # fmt: skip
        except UnicodeDecodeError:
            raise ApiError(400, "bad_encoding", "the form is not UTF-8 text (GeoReport v2 text is UTF-8)") from None
        except ValueError:
            raise ApiError(400, "too_many", f"at most {MAX_FIELDS} form fields") from None
        return dict(pairs)
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise ApiError(400, "invalid_request", f"{name} must be a text field, not a file")
            fields[name] = value
        return fields
    raise ApiError(400, "invalid_request", "post the request form-encoded (application/x-www-form-urlencoded)")


def field(form: dict[str, str], name: str) -> str | None:
    """A text field, stripped; an empty one is the same as an absent one."""
    value = form.get(name)
    if value is None or not value.strip():
        return None
    text = value.strip()
    limit = LIMITS.get(name, MAX_DESCRIPTION)
    if len(text) > limit:
        raise ApiError(400, "too_long", f"{name} is {len(text)} characters; the limit is {limit}")
    return text


def coordinates(form: dict[str, str]) -> tuple[float, float] | None:
    """``lat`` and ``long`` as numbers in range, or None when neither is given (the request names an address)."""
    lat_text, lon_text = field(form, "lat"), field(form, "long")
    if lat_text is None and lon_text is None:
        return None
    if lat_text is None or lon_text is None:
        raise ApiError(400, "missing_field", "lat and long go together: give both, or neither and an address_string")
    return _number(lat_text, "lat", MAX_LAT), _number(lon_text, "long", 180.0)


def _number(text: str, name: str, limit: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "wrong_type", f"{name} must be a number (WGS84 degrees)") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise ApiError(400, "out_of_range", f"{name} must be between {-limit} and {limit}, got {text}")
    return value


def moment(text: str | None, name: str) -> datetime | None:
    """A query's time (w3c ISO 8601; no offset means UTC), or None when the argument is absent or empty."""
    if text is None or not text.strip():
        return None
    example = "e.g. 2026-11-26T09:00:00Z"
    try:
        value = parse_iso(text)
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, "bad_timestamp", f"{name} must be an ISO 8601 time, {example}") from None
    if not EARLIEST <= value <= LATEST:
        raise ApiError(400, "out_of_range", f"{name} must be between 1970-01-01T00:00:00Z and 9999-01-01T00:00:00Z")
    return value


def window(start_date: str | None, end_date: str | None, now: datetime, widest: timedelta) -> tuple[datetime, datetime]:
    """A query's time window: by default the ``widest`` span to now; with only ``start_date``, that span from it (to
    now at most); with only ``end_date``, the span before it. Wider than ``widest``, or backwards: a 400."""
    start, end = moment(start_date, "start_date"), moment(end_date, "end_date")
    if end is None:
        end = now if start is None else min(start + widest, now)
    start = start or end - widest
    if end < start:
        raise ApiError(400, "invalid_request", "end_date is before start_date")
    if end - start > widest:
        raise ApiError(400, "invalid_request", f"start_date to end_date may span at most {widest.days} days")
    return start, end


def listed(text: str | None, limit: int = 100) -> list[str]:
    """A comma-separated argument's values; empty or absent: none."""
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    if len(items) > limit:
        raise ApiError(400, "too_many", f"at most {limit} values in one filter")
    return items


__all__ = ["coordinates", "field", "listed", "moment", "read_form", "window"]
