"""Where the worker's output records go: at least once through Faust's producer, or exactly once in transactions.

**At least once** (the default, and all the dev broker can do): :class:`FaustSink`
sends through the worker's Faust producer and returns once the broker has every
record; the Redis ledger then marks them sent, so a redelivered input re-sends
only what was never confirmed, with the same ids. A crash between the two can
repeat a record on a topic; consumers use the ids as idempotency keys.

**Exactly once** (``CITYLOOP_PROCESSING_GUARANTEE=exactly_once``, on a broker
with transactions): :class:`TransactionalSink` keeps a batch's output in memory
while the batch is processed, then sends it and the input offsets in one Kafka
transaction. A ``read_committed`` consumer sees each batch's output once or not
at all; the ledger is marked only after the commit, so a batch whose transaction
did not commit is processed again from its inputs and sends the stored records.

Both group a call's records by partition (Kafka's default partitioner, so any
client agrees) into one aiokafka record batch per partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from streams import metrics
from streams.errors import FailedToStart
from streams.kafkaaccess import KafkaAccess

log = logging.getLogger(__name__)

Record = tuple[str, bytes, bytes]  # topic, key, value
Action = Callable[[], Awaitable[Any]]


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives a keyed record (Java, kafka-python and aiokafka agree).

    Every writer of a topic must agree: an incident's events come from the
    worker and from the API, and the lifecycle needs them in one partition.
    """
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class _Batches:
    """Sends records as one aiokafka record batch per partition, knowing each topic's partitions."""

    def __init__(self) -> None:
        self._partitions: dict[str, list[int]] = {}

    async def _partitions_of(self, producer: Any, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known is None:
            known = self._partitions[topic] = sorted(await producer.partitions_for(topic))
        return known

    async def send(self, producer: Any, records: Sequence[Record]) -> None:
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        for topic, key, value in records:
            partition = partition_for(key, await self._partitions_of(producer, topic))
            groups.setdefault((topic, partition), []).append((key, value))
        futures = []
        for (topic, partition), items in groups.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a record of {len(value)} bytes does not fit a producer batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)


class FaustSink:
    """At least once: sends through the worker's own (Faust's) producer; the ledger is marked right after.

    A record costs a coroutine, a partitioner call and a future when sent alone
    (about a sixth of a busy worker's time); here a call's records are grouped
    by partition and each group is one send.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._batches = _Batches()

    async def send_all(self, records: Sequence[Record]) -> None:
        producer = self._app.producer._producer  # the started aiokafka producer under Faust's
        if producer is None:
            raise ConnectionError("the worker's producer is not running")
        await self._batches.send(producer, records)

    async def after_delivery(self, action: Action) -> None:
        await action()  # the broker has the records already


@dataclass
class _Unit:
    records: list[Record] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


_current: ContextVar[_Unit | None] = ContextVar("cityloop_unit_of_work", default=None)


class TransactionalSink:
    """Exactly once: each unit of work (an input batch, a timer round) is one Kafka transaction.

    Records and ledger marks are kept per asyncio task (a context variable), so
    the ingest and the SLA timer can each build their own unit at once; their
    transactions are committed one at a time on the one transactional producer.
    """

    def __init__(self, kafka: KafkaAccess, transactional_id: str, transaction_timeout_ms: int = 15_000) -> None:
        self._kafka = kafka
        self.transactional_id = transactional_id
        self._timeout_ms = transaction_timeout_ms
        self._producer: Any = None
        self._batches = _Batches()
        self._lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Start the producer and register its transactional id (fencing an earlier holder of it)."""
        from aiokafka import AIOKafkaProducer

        self._lock = asyncio.Lock()
        self._producer = AIOKafkaProducer(  # aiokafka makes its objects inside the running loop
            **self._kafka.aiokafka(), transactional_id=self.transactional_id, enable_idempotence=True, acks="all",
            transaction_timeout_ms=self._timeout_ms, max_batch_size=256 * 1024, linger_ms=0,
        )  # fmt: skip
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise FailedToStart(
                f"CITYLOOP_PROCESSING_GUARANTEE=exactly_once needs a broker with transactions, and "
                f"{self._kafka.describe()} refused a transactional producer ({type(exc).__name__}: {exc}); use "
                "at_least_once (the default) with this broker"
            ) from None

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    # ------------------------------------------------------------ the Sink protocol, inside a unit of work

    def _unit(self) -> _Unit:
        unit = _current.get()
        if unit is None:
            raise RuntimeError("exactly-once output must be written inside TransactionalSink.unit()")
        return unit

    async def send_all(self, records: Sequence[Record]) -> None:
        self._unit().records.extend(records)

    async def after_delivery(self, action: Action) -> None:
        self._unit().actions.append(action)

    def checkpoint(self) -> tuple[int, int]:
        unit = self._unit()
        return len(unit.records), len(unit.actions)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget what a failed attempt added: the retry produces it again (from the ledger's stored records)."""
        unit = self._unit()
        del unit.records[mark[0] :], unit.actions[mark[1] :]

    # ------------------------------------------------------------------------------------------ units

    @asynccontextmanager
    async def unit(self, offsets: Mapping[TopicPartition, int] | None = None,
                   group_id: str | None = None) -> AsyncIterator[None]:  # fmt: skip
        """Collect the output of the block, then commit it (with ``offsets`` for ``group_id``) in one transaction.

        A block that raises commits nothing: its inputs are not marked read, so
        they come again. A commit the broker refuses is retried with the same
        records until it goes through; a fenced producer (another worker took
        this transactional id) stops the worker.
        """
        token = _current.set(_Unit())
        try:
            yield
            unit = _current.get()
            assert unit is not None
            if unit.records or offsets:
                await self._commit(unit, offsets or {}, group_id)
            for action in unit.actions:  # the ledger learns what the transaction made visible
                await action()
        finally:
            _current.reset(token)

    async def _commit(self, unit: _Unit, offsets: Mapping[TopicPartition, int], group_id: str | None) -> None:
        if self._producer is None or self._lock is None:
            raise ConnectionError("the transactional producer is not running")
        delay = 0.1
        while True:
            async with self._lock:
                try:
                    async with self._producer.transaction():
                        if unit.records:
                            await self._batches.send(self._producer, unit.records)
                        if offsets:
                            await self._producer.send_offsets_to_transaction(dict(offsets), group_id)
                    metrics.TRANSACTIONS.labels("committed").inc()
                    return
                except ProducerFenced:
                    metrics.TRANSACTIONS.labels("fenced").inc()
                    raise
                except KafkaError as exc:
                    metrics.TRANSACTIONS.labels("aborted").inc()
                    log.warning("transaction of %d records aborted (%s); retrying in %.1f s", len(unit.records),
                                exc, delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def delivered(sink: Any, action: Action) -> None:
    """Run ``action`` once the records sent so far are durable: at once, or after the unit's transaction commits."""
    after = getattr(sink, "after_delivery", None)
    if after is None:  # a sink without the notion (tests' and benchmarks' fakes): sent means delivered
        await action()
    else:
        await after(action)
