"""The worker's three input topics, reports, readings and feedback, consumed in batches straight from aiokafka.

Faust hands every record to an agent as an event: a message object, a trip
through the topic conductor, stream sensors and an acknowledgement per record.
That was most of a worker's time on the hot topics (measured on the dev
broker: 3,134 readings/s through a Faust agent against 18,945/s through this
loop, the same engine on both). The feedback topic (triage decisions and the
work orders' lifecycle events) is read by the same consumer; no CityLoop topic
goes through a Faust agent.

This service is one aiokafka consumer in its own group (``<group>-ingest``),
started with the worker. It fetches the topics in turn (so a backlog on one
never holds up another) and hands each topic's records to that topic's handler
as one batch (streams/app.py registers one per topic). At least once, the
engine's ledger makes a redelivered record harmless, so the consumer commits
only offsets whose batch is done (at most once a second, and when partitions
are revoked or the worker stops); exactly once, each batch's output and its
offsets commit in one Kafka transaction (streams/sinks.py). A batch that keeps
failing for a reason other than an unavailable broker or Redis is split and
only its failing records are dead-lettered (``streams.app._process``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, InvalidSessionTimeoutError, KafkaError
from mode import Service

from streams import lag, metrics
from streams.kafkaaccess import KafkaAccess
from streams.outcomes import Envelope
from streams.producemeter import stream_of
from streams.sinks import TransactionalSink

log = logging.getLogger(__name__)

Handler = Callable[[list[Envelope]], Awaitable[Any]]


def envelopes(messages: Iterable[Any]) -> list[Envelope]:
    """aiokafka records as the engine's envelopes (timestamps in seconds, as Faust gives them)."""
    return [
        Envelope(m.value, m.key, m.topic, m.partition, m.offset, m.timestamp / 1000 if m.timestamp else None)
        for m in messages
    ]


def partition_ranges(tps: Iterable[TopicPartition]) -> str:
    """``a.reports 0-3, a.feedback 0,2``: the partitions of each topic, runs written as ranges."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    described = []
    for topic, numbers in sorted(by_topic.items()):
        numbers.sort()
        runs: list[list[int]] = []
        for number in numbers:
            if runs and number == runs[-1][1] + 1:
                runs[-1][1] = number
            else:
                runs.append([number, number])
        described.append(f"{topic} " + ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs))
    return ", ".join(described) or "none"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, service: BatchIngest) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._service.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._service.assigned(set(assigned))


class BatchIngest(Service):
    """Reads ``handlers``' topics in batches and commits what they finished."""

    logger = logging.getLogger("faust.cityloop")  # its "Starting..."/"Stopping..." lines: Faust's, behind --verbose

    def __init__(
        self,
        *,
        kafka: KafkaAccess | str,
        group_id: str,
        handlers: dict[str, Handler],
        batch_size: int,
        fetch_max_wait_ms: int,
        commit_interval_s: float = 1.0,
        offsets: lag.FetchedOffsets | None = None,
        group_instance_id: str | None = None,
        session_timeout_s: float = 6.0,
        transactions: TransactionalSink | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._kafka = KafkaAccess.of(kafka)
        self._group_id = group_id
        self._group_instance_id = group_instance_id
        self._session_timeout_s = session_timeout_s
        self._transactions = transactions
        self._handlers = handlers
        self._batch_size = batch_size
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._commit_interval = commit_interval_s
        self.offsets = offsets or lag.FetchedOffsets()
        self.committed: dict[TopicPartition, int] = {}  # the group's position per partition, as last committed
        self._done: dict[TopicPartition, int] = {}  # next offset to process, per partition, not yet committed
        self._last_commit = time.monotonic()
        self.uncommitted_at_stop = 0  # partitions whose finished offsets the last commit at stop could not write
        self.last_batch_at: float | None = None  # monotonic time the last batch finished (the health's stall clock)
        self.in_flight = 0  # records of the batch being handled, for what a stop cut short abandons
        self._turns = list(handlers)
        self.consumer: AIOKafkaConsumer | None = None
        self._unit_lock = asyncio.Lock()

    # ------------------------------------------------------------- lifecycle

    async def on_start(self) -> None:
        # the dev broker (Tansu) takes half the session timeout to complete a group join, so workers there get a
        # short session (CITYLOOP_GROUP_SESSION_TIMEOUT_S=2 from `cityloop dev up` and the demo; Apache Kafka
        # accepts 6 s and more by default)
        self.consumer = AIOKafkaConsumer(
            **self._kafka.aiokafka(),
            group_id=self._group_id,
            group_instance_id=self._group_instance_id,  # static membership: a restart resumes without a rebalance
            client_id=f"{self._group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # exactly once: read only committed records (the worker reads its own feedback events back)
            isolation_level="read_committed" if self._transactions is not None else "read_uncommitted",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            session_timeout_ms=int(self._session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(self._session_timeout_s * 1000 / 6)),
        )
        self.consumer.subscribe(topics=list(self._handlers), listener=_Listener(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        await self._commit(force=True)
        self.uncommitted_at_stop = len(self._done)
        await self.consumer.stop()
        self.consumer = None

    # ------------------------------------------------------------ the loop

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self.should_stop:
            try:
                got = await self._next(consumer)
            except InvalidSessionTimeoutError:
                log.critical(
                    "the broker refuses a %g s group session (its group.min.session.timeout.ms is higher; Apache "
                    "Kafka's default is 6 s): set CITYLOOP_GROUP_SESSION_TIMEOUT_S to at least that",
                    self._session_timeout_s,
                )
                await self.crash(RuntimeError("group session timeout refused by the broker"))
                return
            except (KafkaError, OSError) as exc:
                log.warning("fetching from the broker failed (%r); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if got:
                await self._handle(got)
            await self._commit()

    async def _next(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """The next batch, taking each topic in turn so a backlog on one never starves another.

        aiokafka drains its buffered partitions in the order their fetches
        arrived, so without this a backlog of reports would hold the feedback
        topic (units' acknowledgements, the ops centre's decisions) behind it.
        """
        assigned = consumer.assignment()
        for _ in range(len(self._handlers)):
            topic = self._turns[0]
            self._turns.append(self._turns.pop(0))
            partitions = [tp for tp in assigned if tp.topic == topic]
            if partitions:
                got = await consumer.getmany(*partitions, timeout_ms=0, max_records=self._batch_size)
                if got:
                    return got
        return await consumer.getmany(timeout_ms=200, max_records=self._batch_size)

    async def _handle(self, got: dict[TopicPartition, list[Any]]) -> None:
        self.in_flight = sum(len(messages) for messages in got.values())
        try:
            await self._handle_batch(got)
        finally:
            self.in_flight = 0

    async def _handle_batch(self, got: dict[TopicPartition, list[Any]]) -> None:
        by_topic: dict[str, list[Any]] = {}
        for tp, messages in got.items():
            if messages:
                self.offsets.saw(tp, messages[0].offset)
                self.offsets.saw(tp, messages[-1].offset)
                by_topic.setdefault(tp.topic, []).extend(messages)
        if self._transactions is not None:
            await self._handle_exactly_once(got, by_topic)
            self.last_batch_at = time.monotonic()
            return
        for topic, messages in by_topic.items():
            await self._handlers[topic](envelopes(messages))
        for tp, messages in got.items():
            if messages and tp in self.offsets.assigned:  # a partition taken away meanwhile: its new owner counts it
                self._done[tp] = messages[-1].offset + 1
                metrics.CONSUMED.labels(stream_of(tp.topic)).inc(len(messages))
        self.last_batch_at = time.monotonic()

    async def _handle_exactly_once(self, got: dict[TopicPartition, list[Any]], by_topic: dict[str, list[Any]]) -> None:
        """Each topic's batch and its offsets in one transaction: its output is seen once or not at all.

        A rebalance waits for the unit in flight (``revoked`` takes the same
        lock), so a unit commits offsets only for partitions this worker still
        holds; records of partitions taken away between two units are left to
        their new owner, which starts from the last committed offset.
        """
        assert self._transactions is not None and self.consumer is not None
        for topic in by_topic:
            async with self._unit_lock:
                parts = {tp: batch for tp, batch in got.items()
                         if batch and tp.topic == topic and tp in self.offsets.assigned}  # fmt: skip
                if not parts:
                    continue
                # past the last record, and past a transaction marker after it (else the lag would never reach 0)
                offsets = {tp: max(batch[-1].offset + 1, await self.consumer.position(tp))
                           for tp, batch in parts.items()}  # fmt: skip
                messages = [message for batch in parts.values() for message in batch]
                async with self._transactions.unit(offsets, self._group_id):
                    await self._handlers[topic](envelopes(messages))
                metrics.CONSUMED.labels(stream_of(topic)).inc(len(messages))
                self.committed.update(offsets)
                metrics.COMMITS.inc()

    async def _commit(self, force: bool = False, only: set[TopicPartition] | None = None) -> None:
        """Commit finished offsets, at most once per interval unless forced (exactly once: in each transaction)."""
        if self.consumer is None or not self._done or self._transactions is not None:
            return
        if not force and time.monotonic() - self._last_commit < self._commit_interval:
            return
        offsets = {tp: o for tp, o in self._done.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the partitions moved to another worker meanwhile: it starts from the last commit, and the ledger
            # turns what it sees again into nothing new
            log.info("offsets not committed (%s); the new owner of those partitions resumes earlier", exc)
        except KafkaError as exc:
            log.warning("committing offsets failed (%r); retrying at the next batch", exc)
            return
        else:
            self.committed.update(offsets)
            metrics.COMMITS.inc()
        for tp in offsets:
            if self._done.get(tp) == offsets[tp]:
                del self._done[tp]
        self._last_commit = time.monotonic()

    # ---------------------------------------------------------- rebalances

    async def revoked(self, tps: set[TopicPartition]) -> None:
        if self._transactions is not None:
            async with self._unit_lock:  # the unit in flight commits (its partitions still ours) before they go
                pass
        await self._commit(force=True, only=tps)
        for tp in tps:
            self._done.pop(tp, None)
            self.committed.pop(tp, None)
        self.offsets.revoke(tps)
        metrics.INGEST_PARTITIONS.set(len(self.offsets.assigned))
        metrics.READY.set(1 if self.offsets.assigned else 0)

    def assigned(self, tps: set[TopicPartition]) -> None:
        self.offsets.assign(tps)
        metrics.REBALANCES.inc()
        metrics.INGEST_PARTITIONS.set(len(tps))
        metrics.READY.set(1 if tps else 0)
        if tps:
            log.info("ready: ingest holds %d partitions: %s", len(tps), partition_ranges(tps))
        else:
            log.info("ingest holds no partitions: other workers hold them all; this one stands by")

    def abandoned(self) -> str:
        """What a stop cut short leaves undone, in words (read from the shutdown watchdog's thread)."""
        undone = []
        if self.in_flight:
            undone.append(f"a batch of {self.in_flight} records in flight")
        if self._done:
            undone.append(f"processed records of {len(self._done)} partition(s) whose offsets are not committed")
        if not undone:
            return "nothing: every processed record's offset was committed"
        return "; ".join(undone) + (
            ": the next owner of those partitions reads them again, and the ledger gives "
            "each its first outcome again (same ids), sent again only if never confirmed"
        )

    def highwater(self, tp: TopicPartition) -> int | None:
        return None if self.consumer is None else self.consumer.highwater(tp)
