"""Consumer lag, computed from what the worker itself fetched and committed.

Lag of one partition = the end of the log minus the consumer group's position (the next offset it will process).

Where the end comes from matters. The usual exporters ask the broker with ListOffsets(LATEST); the dev broker
(Tansu) answers that wrongly after a multi-record batch: it returns the last batch's *base* offset + 1 (measured:
1,203 records in a few batches, ListOffsets said 1,004). A lag built on it reads 0 while hundreds of records wait.
The high watermark that the broker puts in every **fetch** response is right on Tansu (1,203 in the same run) and is
what Kafka defines as the end of the log for consumers; aiokafka keeps the latest one per partition
(``consumer.highwater(tp)``), updated by every fetch, empty ones included, so it follows an idle partition too. As a
floor against any broker that gets the watermark wrong, the end is also never less than the highest offset fetched
+ 1 (a record that was fetched exists).

The position is the offset the worker committed (the batch consumer's commits, about one a second, or its
transactions' offsets with exactly-once output): what a restarted worker would resume from, so the lag counts every
record not yet safely processed. Before the first commit on a partition nothing was committed by the group, the
position is the first offset this worker saw there.

aiokafka does not fetch a partition again while records it fetched from it are still buffered, so while a worker
is stuck (Redis down, a slow batch) its own last watermark dates from its last fetch, older than the log (measured:
329 and 514 for a backlog of 1,500). The worker therefore also runs a group-less probe consumer (streams/lagprobe.py)
that refetches its partitions every 2 s; the end is the larger of the two (1,500 of 1,500 in tests/ops/test_lag.py).

Only partitions assigned to this worker are reported, so summing over workers does not count a partition twice
(except for a moment during a rebalance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, CollectorRegistry

from streams.topics import Topics

log = logging.getLogger(__name__)

LAG_METRIC = "cityloop_consumer_lag_records"
_installed: dict[int, LagCollector] = {}  # by id() of the registry: the worker's and the connectors' differ


def partition_lag(
    highwater: int | None, highest_fetched: int | None, committed: int | None, first_fetched: int | None
) -> int | None:
    """Records not yet processed in one partition, or None when there is not enough to say.

    ``highwater`` is the high watermark of the latest fetch response (the next offset the log will write);
    ``highest_fetched`` and ``first_fetched`` are offsets of records this worker received; ``committed`` is the
    group's committed position (the next offset to process).
    """
    ends = [h for h in (highwater, None if highest_fetched is None else highest_fetched + 1) if h is not None]
    if not ends:
        return None
    end = max(ends)
    position = committed if committed is not None else first_fetched
    if position is None:
        return 0 if end == 0 else None
    return max(0, end - position)


@dataclass
class FetchedOffsets:
    """Per partition: the first and highest offsets this worker received, and which partitions it holds."""

    first: dict[Any, int] = field(default_factory=dict)
    highest: dict[Any, int] = field(default_factory=dict)
    assigned: set[Any] = field(default_factory=set)

    def saw(self, tp: Any, offset: int) -> None:
        if offset > self.highest.get(tp, -1):
            self.highest[tp] = offset
        self.first.setdefault(tp, offset)

    def assign(self, tps: Iterable[Any]) -> None:
        self.assigned = set(tps)

    def revoke(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self.assigned.discard(tp)
            self.first.pop(tp, None)


@dataclass
class LagSource:
    """One consumer's view: what it fetched, the log end it last saw per partition, and its group's positions."""

    offsets: FetchedOffsets
    highwater: Callable[[Any], int | None]
    committed: Callable[[], Mapping[Any, int]]
    # where the group starts in a partition this worker has neither committed nor received a record from: the
    # group's committed offset from an earlier worker, else the log's start (streams/lagprobe.py asks the broker)
    start: Callable[[Any], int | None] = lambda tp: None


class LagCollector:
    """A prometheus-client collector: ``cityloop_consumer_lag_records{stream, partition}`` at scrape time."""

    def __init__(self, sources: Sequence[LagSource], topics: Topics) -> None:
        self._sources = list(sources)
        self._streams = {name: name.rsplit(".", 1)[1] for name in topics.all()}

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            LAG_METRIC,
            "Records in a partition not yet processed and committed by this worker's consumer group (log end from "
            "fetch responses' high watermark, minus the committed offset), for partitions assigned to this worker.",
            labels=["stream", "partition"],
        )

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def lags(self) -> Iterator[tuple[str, int, int]]:
        """(stream, partition, lag) of every partition this worker holds whose lag can be told."""
        for source in self._sources:
            if not source.offsets.assigned:
                continue
            committed = source.committed()
            for tp in sorted(source.offsets.assigned):
                stream = self._streams.get(tp.topic)
                if stream is None:
                    continue
                try:
                    highwater = source.highwater(tp)
                except (AssertionError, KeyError, AttributeError, RuntimeError, ValueError):
                    highwater = None
                first = source.offsets.first.get(tp)
                if first is None and tp not in committed:
                    first = source.start(tp)
                lag = partition_lag(highwater, source.offsets.highest.get(tp), committed.get(tp), first)
                if lag is not None:
                    yield stream, tp.partition, lag

    def total(self) -> int | None:
        """Records waiting in all the partitions this worker holds; None when no partition's lag can be told."""
        known = [lag for _, _, lag in self.lags()]
        return sum(known) if known else None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for stream, partition, lag in self.lags():
            family.add_metric([stream, str(partition)], lag)
        yield family


def install(sources: Sequence[LagSource], topics: Topics, registry: CollectorRegistry = REGISTRY) -> LagCollector:
    """Serve the lag of ``sources`` (the consumers of one process) at ``/metrics``; one collector per registry."""
    previous = _installed.pop(id(registry), None)
    if previous is not None:  # one worker per process; a second app (tests) replaces the first's collector
        registry.unregister(previous)
    collector = _installed[id(registry)] = LagCollector(sources, topics)
    registry.register(collector)
    return collector
