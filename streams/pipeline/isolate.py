"""Running a stage over a batch so that one bad record fails alone: the others go on, it is dead-lettered."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from streams.logs import bound, record_position
from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter

log = logging.getLogger("streams.engine")


def isolated(
    build: Callable[[list[Any], datetime], list[Any]],
    items: list[tuple[Envelope, Any]],
    now: datetime,
    stage: str,
    ids: Callable[[Any], dict[str, str | None]] | None = None,
) -> tuple[list[tuple[Any, Any]], list[tuple[Envelope, DeadLetter]]]:
    """Map ``build`` over the payloads of a batch; if it fails, item by item, dead-lettering the culprits.

    ``build`` returns one result per payload; the answer pairs each payload
    with its result, and lists the envelopes whose payload failed, with why.
    One bad record must never stop the stream. Item by item, the lines
    logged carry the record's position and ``ids(payload)`` (streams/logs.py).
    """
    payloads = [payload for _, payload in items]
    try:
        return list(zip(payloads, build(payloads, now), strict=True)), []
    except Exception:  # noqa: BLE001 - one bad record must not stop the stream
        log.exception("%s failed on a batch of %d; retrying one by one", stage, len(items))
    results: list[tuple[Any, Any]] = []
    failed: list[tuple[Envelope, DeadLetter]] = []
    for envelope, payload in items:
        with bound(record=record_position(envelope.topic, envelope.partition, envelope.offset),
                   **(ids(payload) if ids is not None else {})):  # fmt: skip
            try:
                results.append((payload, build([payload], now)[0]))
            except Exception as exc:  # noqa: BLE001
                log.exception("%s failed on %s:%s@%s", stage, envelope.topic, envelope.partition, envelope.offset)
                failed.append((envelope, DeadLetter(stage, "processing_error", f"{type(exc).__name__}: {exc}")))
    return results, failed
