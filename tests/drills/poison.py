"""Malformed payloads for the poison-message drill, from a seeded generator (the same run every time).

Every payload made here breaks the stream contract (docs/CONTRACT.md) in at least one way, so each must end in the
dead-letter topic; the family name says how it is broken.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Maker = Callable[[random.Random, dict[str, Any]], bytes | None]

REPORT_FIELDS = ("report_id", "source", "text", "lat", "lon", "reported_at")
READING_FIELDS = ("sensor_id", "kind", "value", "lat", "lon", "observed_at")


def valid_report(rng: random.Random, n: int) -> dict[str, Any]:
    source = rng.choice(["app", "web", "phone", "open311", "carrier-pigeon"])
    now = datetime.now(UTC).isoformat()
    return {
        "report_id": f"fz-{n}",
        "source": source,
        "text": "broken light",
        "lat": 52.0,
        "lon": 5.1,
        "reported_at": now,
    }


def valid_reading(rng: random.Random, n: int) -> dict[str, Any]:
    return {"sensor_id": f"fz-s{n}", "kind": "water_level", "value": rng.uniform(0, 10), "unit": "cm", "lat": 52.0,
            "lon": 5.1, "observed_at": datetime.now(UTC).isoformat()}  # fmt: skip


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _random_bytes(rng: random.Random, _: dict[str, Any]) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    return data if not data.lstrip().startswith(b"{") else b"\xff" + data  # an object would need every field anyway


def _huge(rng: random.Random, base: dict[str, Any]) -> bytes:
    return _dumps({**base, "text": "x" * rng.randrange(70_000, 300_000)})


def _deep(rng: random.Random, base: dict[str, Any]) -> bytes:
    depth = rng.randrange(2_000, 20_000)
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _wrong_type(rng: random.Random, base: dict[str, Any]) -> bytes:
    field = rng.choice(sorted(base))
    wrong: list[Any] = [[1, 2], {"x": 1}, True, None if field != "unit" else 5, 12345, "text", ""]
    numeric = isinstance(base[field], int | float)  # JSON has one number type: an int is a fine float
    value = rng.choice([w for w in wrong if w is not None and type(w) is not type(base[field])
                        and not (numeric and type(w) in (int, float))])  # fmt: skip
    return _dumps({**base, field: value})


def _non_finite(rng: random.Random, base: dict[str, Any]) -> bytes:
    field = rng.choice([f for f in ("lat", "lon", "value") if f in base])
    return _dumps({**base, field: rng.choice([float("nan"), float("inf"), float("-inf")])})


def _bad_utf8(rng: random.Random, base: dict[str, Any]) -> bytes:
    raw = bytearray(_dumps(base))
    raw.insert(rng.randrange(1, len(raw) - 1), rng.choice([0xFF, 0xC0, 0x80, 0xED]))
    return bytes(raw)


def _missing(rng: random.Random, base: dict[str, Any]) -> bytes:
    required = REPORT_FIELDS if "report_id" in base else READING_FIELDS
    field = rng.choice(required)
    return _dumps({k: v for k, v in base.items() if k != field} if rng.random() < 0.7 else {**base, field: None})


def _duplicate_key(rng: random.Random, base: dict[str, Any]) -> bytes:
    field = rng.choice(sorted(base))
    body = json.dumps(base)[1:-1]
    return ("{" + f"{json.dumps(field)}: {json.dumps(base[field])}, " + body + "}").encode()


def _wrong_shape(rng: random.Random, base: dict[str, Any]) -> bytes:
    return _dumps(rng.choice([[base], "a report", 42, None, True, [], 3.5, [1, "two", None]]))


def _out_of_range(rng: random.Random, base: dict[str, Any]) -> bytes:
    field, value = rng.choice([("lat", 90.5), ("lat", -1e9), ("lon", 180.01), ("lon", -540.0)])
    return _dumps({**base, field: value})


def _bad_time(rng: random.Random, base: dict[str, Any]) -> bytes:
    field = "reported_at" if "reported_at" in base else "observed_at"
    value = rng.choice(["yesterday", "2026-13-45T99:00:00Z", "2026-01-01T00:00:00",
                        (datetime.now(UTC) + timedelta(days=rng.randrange(2, 4000))).isoformat(), "", "0"])  # fmt: skip
    return _dumps({**base, field: value})


def _bad_id(rng: random.Random, base: dict[str, Any]) -> bytes:
    field = "report_id" if "report_id" in base else "sensor_id"
    value = rng.choice(["has space", "x" * 129, "tab\there", "nul\x00id", "\n"])
    return _dumps({**base, field: value})


def _bad_text(rng: random.Random, base: dict[str, Any]) -> bytes:
    if "text" not in base:
        return _dumps({**base, "kind": rng.choice(["lava_level", "unicorns", "WATER_LEVEL"])})  # no detector: detect
    return _dumps({**base, "text": rng.choice(["", "   \n\t", "y" * 4001])})


def _null_or_empty(rng: random.Random, _: dict[str, Any]) -> bytes | None:
    return rng.choice([None, b"", b" ", b"null", b"{}"])


FAMILIES: dict[str, Maker] = {
    "random_bytes": _random_bytes,
    "huge": _huge,
    "deep": _deep,
    "wrong_type": _wrong_type,
    "non_finite": _non_finite,
    "bad_utf8": _bad_utf8,
    "missing_field": _missing,
    "duplicate_key": _duplicate_key,
    "wrong_shape": _wrong_shape,
    "out_of_range": _out_of_range,
    "bad_time": _bad_time,
    "bad_id": _bad_id,
    "bad_text_or_kind": _bad_text,
    "null_or_empty": _null_or_empty,
}


def poison(rng: random.Random, base: dict[str, Any]) -> tuple[str, bytes | None]:
    """A (family, payload) that breaks the contract, built from a valid record ``base``."""
    family = rng.choice(sorted(FAMILIES))
    return family, FAMILIES[family](rng, base)


# The reason codes each family may be given, written from the contract (docs/CONTRACT.md), not taken from the
# decoders: a decoder that names the wrong reason fails here, not only a worker that mislabels its dead letter.
# ``unknown_kind``: a reading that decodes but names a kind with no detector (dead-lettered at the detect stage).
FAMILY_CODES: dict[str, frozenset[str]] = {
    "random_bytes": frozenset({"bad_encoding", "invalid_json"}),  # invalid UTF-8, or ASCII that is not JSON
    "huge": frozenset({"too_large"}),
    "deep": frozenset({"too_deep", "too_large"}),  # the deepest nestings are also over the size limit
    "wrong_type": frozenset({"wrong_type"}),
    "non_finite": frozenset({"non_finite"}),
    "bad_utf8": frozenset({"bad_encoding"}),
    "missing_field": frozenset({"missing_field"}),  # absent or null
    "duplicate_key": frozenset({"duplicate_key"}),
    "wrong_shape": frozenset({"not_object"}),
    "out_of_range": frozenset({"out_of_range"}),
    "bad_time": frozenset({"bad_timestamp", "future_timestamp", "missing_field"}),  # "" is no time at all
    "bad_id": frozenset({"invalid_id", "too_long", "missing_field"}),  # "\n" is blank: no id at all
    "bad_text_or_kind": frozenset({"missing_field", "too_long", "unknown_kind"}),  # blank text, or no detector
    "null_or_empty": frozenset({"invalid_json", "not_object", "missing_field"}),  # b"", b"null", b"{}"
    "near_limit": frozenset({"too_large", "missing_field"}),  # the drill's 0.7-0.9 MB values, and {} under a 0.6 MB key
}
