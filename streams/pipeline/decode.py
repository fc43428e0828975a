"""Stage *decode*: bytes to checked records; what breaks the contract becomes a dead letter.

Also the in-batch part of *deduplicate*: a report id seen twice in one batch
has one outcome (the ledger deduplicates across batches, at emit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter
from streams.records import Rejected, Report

T = TypeVar("T")


def decode(
    envelopes: Sequence[Envelope],
    decoder: Callable[..., T],
    now: datetime,
    max_skew: timedelta,
    stage: str = "validate",
) -> tuple[list[tuple[Envelope, T]], list[tuple[Envelope, DeadLetter]]]:
    """Each envelope decoded by ``decoder``, and the envelopes it rejected with why."""
    decoded: list[tuple[Envelope, T]] = []
    rejected: list[tuple[Envelope, DeadLetter]] = []
    for envelope in envelopes:
        try:
            decoded.append((envelope, decoder(envelope.value, now=now, max_skew=max_skew)))
        except Rejected as exc:
            rejected.append((envelope, DeadLetter(stage, exc.code, exc.reason)))
    return decoded, rejected


def first_of_each_report(decoded: list[tuple[Envelope, Report]]) -> tuple[list[tuple[Envelope, Report]], int]:
    """The first delivery of each report id in the batch, and how many repeats were dropped."""
    seen: set[str] = set()
    unique: list[tuple[Envelope, Report]] = []
    for envelope, report in decoded:
        if report.report_id not in seen:
            seen.add(report.report_id)
            unique.append((envelope, report))
    return unique, len(decoded) - len(unique)
