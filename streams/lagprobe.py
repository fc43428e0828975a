"""A second consumer, outside the group, that keeps the log end of the worker's partitions fresh, so the lag is exact.

The worker's lag (streams/lag.py) takes the log end from the high watermark of fetch responses, because the dev
broker answers ListOffsets(LATEST) wrongly. But the worker's own consumer does not fetch a partition again while
records it fetched from it wait in its buffer, which is exactly when a backlog builds (Redis away, a slow batch):
its watermark then dates from its last fetch, and the lag undercounts (measured: 329 for a backlog of 1,500).

This probe assigns itself the partitions the worker holds, and every ``every_s`` seeks each to the worker's
position and fetches: seeking drops what it had buffered, so every round is a fresh fetch, and the response
carries the partition's current high watermark. It reads at most about a kilobyte per partition per round. It is
assigned its partitions by hand, so it never joins the worker's group and commits nothing; the group id serves
only to read the group's committed offsets for partitions the worker has not yet received a record from (else the
log's start: the group's reset policy is earliest). The lag takes the larger of the two ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

EVERY_S = 2.0


class WatermarkProbe:
    """Fresh high watermarks for the partitions in ``assigned()``, fetched from ``position(tp)`` every round."""

    def __init__(
        self,
        consumer_factory: Callable[[], Any],
        assigned: Callable[[], set[Any]],
        positions: Callable[[], Mapping[Any, int]],
        every_s: float = EVERY_S,
    ) -> None:
        self._factory = consumer_factory
        self._assigned = assigned
        self._positions = positions
        self._every = every_s
        self._consumer: Any = None
        self._held: set[Any] = set()
        self._starts: dict[Any, int] = {}
        self.rounds = 0

    def start(self, tp: Any) -> int | None:
        """Where the group starts in ``tp`` when the worker has neither committed there nor received a record."""
        return self._starts.get(tp)

    def highwater(self, tp: Any) -> int | None:
        if self._consumer is None or tp not in self._held:
            return None
        try:
            return self._consumer.highwater(tp)
        except (AssertionError, KeyError, AttributeError, RuntimeError, ValueError):
            return None

    async def round(self) -> None:
        """One fresh fetch of every partition the worker holds (a consumer started on first use)."""
        wanted = set(self._assigned())
        if not wanted:
            return
        if self._consumer is None:
            self._consumer = self._factory()
            await self._consumer.start()
        if wanted != self._held:
            self._consumer.assign(sorted(wanted))
            self._held = wanted
            self._starts = {}  # a partition handed over may have been committed in since: ask again
        positions = self._positions()
        # asked once per assignment, not every round: an idle partition the worker never receives a record from
        # would otherwise cost an OffsetFetch and a ListOffsets every two seconds for as long as it stays idle
        unknown = [tp for tp in self._held if positions.get(tp) is None and tp not in self._starts]
        if unknown:  # the group's committed offset (an earlier worker's), else the log's start (auto reset: earliest)
            beginnings = await self._consumer.beginning_offsets(unknown)
            for tp in unknown:
                committed = await self._consumer.committed(tp)
                self._starts[tp] = committed if committed is not None else beginnings[tp]
        for tp in self._held:
            position = positions.get(tp)
            self._consumer.seek(tp, position if position is not None else self._starts[tp])
        await self._consumer.getmany(timeout_ms=1000, max_records=len(self._held))
        self.rounds += 1

    async def run(self) -> None:
        """Rounds every ``every_s`` until cancelled; a broker away is waited out quietly (readiness says so)."""
        try:
            while True:
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the lag is a lower bound meanwhile, never wrong upwards
                    log.debug("lag probe round failed (%r); the lag uses the worker's own fetches meanwhile", exc)
                await asyncio.sleep(self._every)
        finally:
            await self.stop()

    async def stop(self) -> None:
        consumer, self._consumer, self._held = self._consumer, None, set()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


def larger_end(*sources: Callable[[Any], int | None]) -> Callable[[Any], int | None]:
    """A highwater callable answering the largest of ``sources``' answers (None when none knows)."""

    def highwater(tp: Any) -> int | None:
        known = [h for h in (source(tp) for source in sources) if h is not None]
        return max(known) if known else None

    return highwater


def probe_for(ingest: Any, kafka: Any, group: str, every_s: float = EVERY_S) -> WatermarkProbe:
    """The probe for a worker's batch consumer (streams/ingest.py): its partitions, from its positions."""
    from aiokafka import AIOKafkaConsumer

    def consumer() -> Any:
        return AIOKafkaConsumer(
            **kafka.aiokafka(),
            # the group's id only to read its committed offsets (manual assignment: it never joins nor commits)
            group_id=group,
            client_id=f"{group}-lag-probe",
            enable_auto_commit=False,
            max_partition_fetch_bytes=1024,  # the response's watermark is what is wanted, not the records
            fetch_max_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )

    def positions() -> dict[Any, int]:
        first = ingest.offsets.first
        return {tp: ingest.committed.get(tp, first.get(tp)) for tp in ingest.offsets.assigned if
                ingest.committed.get(tp, first.get(tp)) is not None}  # fmt: skip

    return WatermarkProbe(consumer, lambda: set(ingest.offsets.assigned), positions, every_s)
