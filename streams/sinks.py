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
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from streams import metrics, producemeter
from streams.errors import FailedToStart
from streams.kafkaaccess import KafkaAccess
from streams.producemeter import ProduceMeter, RecordTooLarge

log = logging.getLogger(__name__)

Record = tuple[str, bytes, bytes]  # topic, key, value
Action = Callable[[], Awaitable[Any]]


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """murmur2 in pure Python costs microseconds; an incident's key goes out three or more times in a row."""
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives a keyed record (Java, kafka-python and aiokafka agree).

    Every writer of a topic must agree: an incident's events come from the
    worker and from the API, and the lifecycle needs them in one partition.
    """
    return partitions[_key_hash(key) % len(partitions)]


class _Batches:
    """Sends records as one aiokafka record batch per partition, knowing each topic's partitions.

    Each batch is metered (streams/producemeter.py): its records and bytes once the broker acknowledges it, the time
    from handing it over to that answer, and an error by class when it fails.
    """

    def __init__(self, meter: ProduceMeter = producemeter.WORKER) -> None:
        self._partitions: dict[str, list[int]] = {}
        self._meter = meter

    async def _partitions_of(self, producer: Any, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known is None:
            try:
                known = self._partitions[topic] = sorted(await producer.partitions_for(topic))
            except Exception as exc:
                self._meter.failed(topic, exc)
                raise
        return known

    async def send(self, producer: Any, records: Sequence[Record]) -> None:
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        for topic, key, value in records:
            partition = partition_for(key, await self._partitions_of(producer, topic))
            groups.setdefault((topic, partition), []).append((key, value))
        futures = []
        for (topic, partition), items in groups.items():
            batch, count, size = producer.create_batch(), 0, 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    futures.append(await self._send(producer, batch, topic, partition, count, size))
                    batch, count, size = producer.create_batch(), 0, 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        too_large = RecordTooLarge(f"a record of {len(value)} bytes does not fit a producer batch")
                        self._meter.failed(topic, too_large)
                        raise too_large
                count, size = count + 1, size + len(key) + len(value)
            futures.append(await self._send(producer, batch, topic, partition, count, size))
        await asyncio.gather(*futures)

    async def _send(self, producer: Any, batch: Any, topic: str, partition: int, count: int, size: int) -> Any:
        started = time.monotonic()
        try:
            future = await producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            self._meter.failed(topic, exc)
            raise
        self._meter.watch(future, topic, count, size, started)
        return future


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
        self._stopped = False
        self._batches = _Batches()
        self._lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Start the producer and register its transactional id (fencing an earlier holder of it)."""
        self._lock = asyncio.Lock()
        self._producer = self._new_producer()
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            self._producer = None
            if "Authorization" in type(exc).__name__:
                raise FailedToStart(
                    f"{self._kafka.describe()} does not let this worker use the transactional id "
                    f"{self.transactional_id!r} ({type(exc).__name__}); ask its operators for a TransactionalId ACL "
                    "on it (or the prefix)"
                ) from None
            raise FailedToStart(
                f"CITYLOOP_PROCESSING_GUARANTEE=exactly_once needs a broker with transactions, and "
                f"{self._kafka.describe()} refused a transactional producer ({type(exc).__name__}: {exc}); use "
                "at_least_once (the default) with this broker"
            ) from None

    def _new_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(  # aiokafka makes its objects inside the running loop
            **self._kafka.aiokafka(), transactional_id=self.transactional_id, enable_idempotence=True, acks="all",
            transaction_timeout_ms=self._timeout_ms, request_timeout_ms=min(10_000, self._timeout_ms // 2),
            max_batch_size=256 * 1024, linger_ms=0,
        )  # fmt: skip

    async def stop(self) -> None:
        self._stopped = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

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
    async def unit(self, offsets: Mapping[TopicPartition, int] | None = None, group_id: str | None = None,
                   give_up_after: float | None = None) -> AsyncIterator[None]:  # fmt: skip
        """Collect the output of the block, then commit it (with ``offsets`` for ``group_id``) in one transaction.

        A block that raises commits nothing: its inputs are not marked read, so
        they come again. A commit the broker refuses is retried with the same
        records (on a fresh producer with the same transactional id, which
        aborts whatever the last one left open) until it goes through, or until
        ``give_up_after`` seconds, when it raises :class:`CommitAbandoned` (the
        SLA timer: its deadlines are leased, and another worker takes them once
        the lease runs out). A fenced producer (another worker took this
        transactional id) raises ProducerFenced and stops the worker.
        """
        token = _current.set(_Unit())
        try:
            yield
            unit = _current.get()
            assert unit is not None
            if unit.records or offsets:
                await self._commit(unit, offsets or {}, group_id, give_up_after)
            for action in unit.actions:  # what the transaction made visible, Redis now learns
                await _after_commit(action)
        finally:
            _current.reset(token)

    async def _commit(self, unit: _Unit, offsets: Mapping[TopicPartition, int], group_id: str | None,
                      give_up_after: float | None) -> None:  # fmt: skip
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        delay = 0.1
        while True:
            if self._stopped or self._lock is None:
                raise ConnectionError("the transactional producer is not running (the worker is stopping)")
            if self._producer is None:
                await self._renew()
            async with self._lock:
                if self._producer is None:
                    pass  # could not start one: wait and try again
                else:
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
                        if not getattr(exc, "retriable", True) and not isinstance(exc, KafkaConnectionError):
                            raise  # an ACL, a record too large: retrying changes nothing
                        log.warning("transaction of %d records aborted (%s); retrying in %.1f s",
                                    len(unit.records), exc, delay)  # fmt: skip
                        await self._discard()
            if deadline is not None and time.monotonic() + delay > deadline:
                raise CommitAbandoned(f"no commit within {give_up_after:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _discard(self) -> None:
        """A producer whose transaction failed may be stuck in an error state: the next attempt starts a new one."""
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()

    async def _renew(self) -> None:
        """A new producer with the same transactional id (starting it aborts what the last one left open)."""
        producer = self._new_producer()
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("restarting the transactional producer failed (%s); trying again", exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        self._producer = producer


class CommitAbandoned(RuntimeError):
    """A unit's transaction could not be committed in the time it was given; nothing of it is visible."""


async def _after_commit(action: Action) -> None:
    """Tell Redis what a committed transaction made visible. Retried while Redis is away; any other failure is
    logged and left: the transaction stands, and at worst a later replay of the same input sends its stored records
    again (at-least-once, with the same ids)."""
    delay = 0.05
    while True:
        try:
            await action()
            return
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.warning("after a commit, Redis is away (%s); retrying in %.2f s", exc, delay)
        except Exception:  # noqa: BLE001 - the transaction is committed; do not stop the stream over its bookkeeping
            log.exception("after a commit, its bookkeeping in Redis failed; left as is")
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def delivered(sink: Any, action: Action) -> None:
    """Run ``action`` once the records sent so far are durable: at once, or after the unit's transaction commits."""
    after = getattr(sink, "after_delivery", None)
    if after is None:  # a sink without the notion (tests' and benchmarks' fakes): sent means delivered
        await action()
    else:
        await after(action)
