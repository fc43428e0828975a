"""ISO 8601 times as every CityLoop record writes them (UTC as ``Z``), and their reading: defined here only.

The feedback package writes and reads them in work orders and views; streams
re-exports them from streams/ids.py for every other record. (The domain
packages cannot import streams, so the one definition lives here.)
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=1024)
def iso(moment: datetime) -> str:
    """ISO 8601, ``Z`` for UTC; remembered, since a batch stamps every record with one moment."""
    return moment.isoformat().replace("+00:00", "Z")


def iso_utc(moment: datetime) -> str:
    """:func:`iso` of the same instant in UTC (for times that may carry another offset)."""
    return iso(moment.astimezone(UTC))


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso` (also any ISO 8601 with an offset); ValueError if it is not one."""
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
