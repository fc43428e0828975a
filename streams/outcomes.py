"""Building the output records (incidents, tasks, feedback events, dead letters).

Pure functions: every time and id is a parameter or derived from the input, so
the same input always yields the same records.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.ids import dead_letter_id, event_id, iso
from streams.topics import CONTRACT_VERSION


@dataclass(frozen=True, slots=True)
class Envelope:
    """One consumed Kafka record: its bytes and where it came from."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None  # seconds since the epoch, the record's broker/producer time


# A dead letter must itself fit in a broker record (Kafka's default limit is 1 MB). An input under that limit becomes
# up to 4/3 larger in base64, or 6 times in escaped JSON text, and a dead letter the producer refuses would stall its
# partition. So an original is kept whole while it encodes to at most 512 KiB (every record within the contract's
# 64 KiB does), and a key while it encodes to at most 256 KiB; beyond that, the first 64 KiB are kept (base64) with
# the size and, for the original, a SHA-256 of the whole.
MAX_ENCODED_ORIGINAL = 512 * 1024
MAX_ENCODED_KEY = 256 * 1024
KEPT_WHEN_CUT = 64 * 1024


def _base64_size(data: bytes) -> int:
    return 4 * ((len(data) + 2) // 3)


def dead_letter(stage: str, code: str, reason: str, envelope: Envelope, now: datetime) -> dict[str, Any]:
    """The dead-letter record for one input record."""
    original: str
    encoding: str
    extra: dict[str, Any] = {}
    value = envelope.value
    if value is None:
        original, encoding = "", "none"
    else:
        try:
            original, encoding = value.decode("utf-8"), "text"
            size = len(json.dumps(original, ensure_ascii=False).encode("utf-8"))
        except UnicodeDecodeError:
            original, encoding, size = "", "base64", _base64_size(value)
        if size > MAX_ENCODED_ORIGINAL:
            original, encoding = base64.b64encode(value[:KEPT_WHEN_CUT]).decode("ascii"), "base64"
            extra = {"original_truncated": True, "original_size": len(value),
                     "original_sha256": hashlib.sha256(value).hexdigest()}  # fmt: skip
        elif encoding == "base64":
            original = base64.b64encode(value).decode("ascii")
    key = envelope.key
    if key is not None and _base64_size(key) > MAX_ENCODED_KEY:
        extra.update(key_truncated=True, key_size=len(key))
        key = key[:KEPT_WHEN_CUT]
    return {
        "schema": CONTRACT_VERSION,
        "deadletter_id": dead_letter_id(envelope.topic, envelope.partition, envelope.offset),
        "stage": stage,
        "reason_code": code,
        "reason": reason,
        "topic": envelope.topic,
        "partition": envelope.partition,
        "offset": envelope.offset,
        "key": None if key is None else base64.b64encode(key).decode("ascii"),
        "original": original,
        "original_encoding": encoding,
        "at": iso(now),
        **extra,
    }


def event(
    kind: str,
    incident_id: str,
    actor: str,
    now: datetime,
    *,
    task_id: str | None = None,
    unit_id: str | None = None,
    key: str = "",
    **fields: Any,
) -> dict[str, Any]:
    """A lifecycle event on the feedback stream; ``key`` makes its id unique per occasion."""
    record = {
        "schema": CONTRACT_VERSION,
        "event_id": event_id(incident_id, kind, task_id, key),
        "type": kind,
        "incident_id": incident_id,
        "task_id": task_id,
        "unit_id": unit_id,
        "actor": actor,
        "at": iso(now),
    }
    record.update(fields)
    return record
