"""Stage *emit*: each outcome's records to the broker once, through the ledger.

The ledger (streams/state.py) stores each outcome under its key the first time
it is seen. An outcome whose records were sent and confirmed is skipped; one
stored but not confirmed (a crash between) is sent again **as stored**, so ids
and assignments never change between deliveries. The marks are written only
once the records are durable (``streams.sinks.delivered``: at once after an
acknowledged send, after the commit of an exactly-once unit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from feedback.reasons import TaskReasons
from streams.pipeline.batch import Emission, Outcome, Sink
from streams.sinks import delivered
from streams.state import RESEND, SENT, Claim, Ledger

log = logging.getLogger(__name__)


class Emitter:
    """Sends outcomes through the ledger; with ``reasons``, keeps why each task on ``tasks_topic`` went where."""

    def __init__(
        self, ledger: Ledger, sink: Sink, *, reasons: TaskReasons | None = None, tasks_topic: str | None = None
    ) -> None:
        self.ledger = ledger
        self.sink = sink
        self.reasons = reasons
        self.tasks_topic = tasks_topic

    async def __call__(self, emissions: Sequence[Emission]) -> tuple[list[tuple[Emission, list[Any]]], list[Emission]]:
        """Send what the ledger has not seen sent; returns (each emission sent with its records, the skipped)."""
        if not emissions:
            return [], []
        return await self.send(emissions, await self.claim(emissions))

    async def claim(self, emissions: Sequence[Emission]) -> list[Claim]:
        """Store each outcome under its key, or learn that it was stored (and perhaps sent) before."""
        if not emissions:
            return []
        return await self.ledger.claim([(e.key, {"records": e.records}) for e in emissions])

    async def send(
        self, emissions: Sequence[Emission], claims: Sequence[Claim]
    ) -> tuple[list[tuple[Emission, list[Any]]], list[Emission]]:
        """Send the claimed outcomes not sent before (a stored one as stored), then mark them sent."""
        sent: list[tuple[Emission, list[Any]]] = []
        skipped: list[Emission] = []
        for emission, claim in zip(emissions, claims, strict=True):
            if claim.status == SENT:
                skipped.append(emission)
            else:
                sent.append((emission, claim.payload["records"] if claim.status == RESEND else emission.records))
        out: list[tuple[str, bytes, bytes]] = []
        tasks: list[tuple[Any, bytes]] = []  # each task record sent, and its JSON: the board keeps why
        for _, records in sent:
            for topic, key, record in records:
                value = orjson.dumps(record)
                out.append((topic, key.encode("utf-8"), value))
                if topic == self.tasks_topic:
                    tasks.append((record, value))
        if out:
            await self.sink.send_all(out)
        confirmed = [claim.key for claim in claims if claim.status != SENT]

        async def durable() -> None:
            await self.ledger.confirm(confirmed)
            if tasks and self.reasons is not None:
                try:
                    await self.reasons.save(tasks)
                except Exception:  # noqa: BLE001 - the board's copy of an explanation is not worth a batch
                    log.warning("could not keep the reasons of %d tasks for the board", len(tasks), exc_info=True)

        await delivered(self.sink, durable)
        return sent, skipped


def count(result: Any, sent: Sequence[tuple[Emission, list[Any]]], skipped: Sequence[Emission], tasks: str) -> None:
    """Add what was emitted to a :class:`~streams.pipeline.batch.BatchResult`."""
    result.duplicates += len(skipped)
    for emission, records in sent:
        result.emitted += len(records)
        if emission.dead_letter is not None:
            result.dead_lettered += 1
            code = emission.dead_letter.code
            result.reasons[code] = result.reasons.get(code, 0) + 1
            continue
        result.accepted += 1
        result.merged += emission.outcome is Outcome.MERGED
        result.triaged += emission.outcome is Outcome.TRIAGE
        result.tasks += any(topic == tasks for topic, _, _ in records)
