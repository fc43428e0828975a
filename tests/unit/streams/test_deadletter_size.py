"""A dead letter always fits in a broker record, whatever the size and bytes of what it keeps."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from streams.outcomes import KEPT_WHEN_CUT, Envelope, dead_letter

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _letter(value: bytes | None, key: bytes | None = b"k") -> dict:
    return dead_letter("validate", "too_large", "too big", Envelope(value, key, "t.reports", 1, 7, None), NOW)


def test_originals_that_fit_are_kept_whole_as_before():
    """Text stays text and other bytes are base64, whole, with no extra fields, up to 512 KiB encoded (a 300 KB
    too-large record included)."""
    big = b"x" * 300_000
    assert _letter(big)["original"].encode() == big and "original_truncated" not in _letter(big)
    assert _letter(b'{"a": 1}')["original"] == '{"a": 1}'
    binary = _letter(b"\xff\x00")
    assert (binary["original"], binary["original_encoding"]) == (base64.b64encode(b"\xff\x00").decode(), "base64")
    assert "original_truncated" not in binary
    assert _letter(None)["original_encoding"] == "none"


def test_a_near_megabyte_original_is_cut_to_64_kib_with_its_size_and_hash():
    """An 900 KB record of bytes (1.2 MB as base64) keeps its first 64 KiB, its size and its SHA-256."""
    value = b"\xff" + bytes(range(256)) * 3500
    letter = _letter(value)
    assert letter["original_truncated"] is True
    assert letter["original_size"] == len(value)
    assert letter["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(letter["original"]) == value[:KEPT_WHEN_CUT]
    assert len(json.dumps(letter).encode()) < 100_000


def test_worst_case_escaping_and_a_huge_key_stay_under_a_megabyte():
    """Control characters (6 bytes each in JSON) up to the limit, or past it, and a 900 KB key: under 1 MB."""
    for size in (87_000, 700_000):
        letter = _letter(b"\x01" * size, key=b"k" * 900_000)
        assert letter["key_truncated"] is True and letter["key_size"] == 900_000
        assert letter.get("original_truncated", False) is (size > 87_381)
        assert len(json.dumps(letter, ensure_ascii=False).encode()) < 1_000_000
