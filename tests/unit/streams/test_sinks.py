"""The exactly-once sink: a unit's records and offsets go in one transaction, the ledger hears only after the commit,
a failed attempt's output is forgotten, a refused commit is retried with the same records."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

from streams.sinks import FaustSink, TransactionalSink, delivered


class Batch:
    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object:
        self.items.append((key, value))
        return object()


class FakeProducer:
    """Enough of aiokafka's transactional producer to see what each transaction held."""

    def __init__(self, refuse_commits: int = 0) -> None:
        self.committed: list[dict] = []
        self.refuse = refuse_commits
        self.open: dict | None = None

    @asynccontextmanager
    async def transaction(self):
        self.open = {"records": [], "offsets": {}}
        yield
        if self.refuse:
            self.refuse -= 1
            self.open = None
            raise KafkaConnectionError("broker went away")
        self.committed.append(self.open)
        self.open = None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send_batch(self, batch: Batch, topic: str, *, partition: int):
        assert self.open is not None, "records sent outside a transaction"
        self.open["records"] += [(topic, key) for key, _ in batch.items]
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_offsets_to_transaction(self, offsets, group_id):
        assert self.open is not None
        self.open["offsets"] = {**offsets, "group": group_id}


def sink_with(producer: FakeProducer) -> TransactionalSink:
    sink = TransactionalSink.__new__(TransactionalSink)
    TransactionalSink.__init__(sink, kafka=None, transactional_id="t")  # type: ignore[arg-type]
    sink._producer, sink._lock = producer, asyncio.Lock()
    sink._new_producer = lambda: producer  # a retry starts "a new producer": the same fake
    return sink


TP = TopicPartition("city.reports", 0)


def test_a_unit_commits_its_records_and_offsets_together_and_then_tells_the_ledger():
    async def run() -> tuple[FakeProducer, list[str]]:
        producer, ledger = FakeProducer(), []
        sink = sink_with(producer)
        async with sink.unit({TP: 11}, "group"):
            await sink.send_all([("city.tasks", b"inc-1", b"{}"), ("city.incidents", b"inc-1", b"{}")])
            await delivered(sink, lambda: _note(ledger, producer, "confirm inc-1"))
            assert producer.committed == [] and ledger == [], "nothing leaves before the unit ends"
        return producer, ledger

    producer, ledger = asyncio.run(run())
    (transaction,) = producer.committed
    assert sorted(transaction["records"]) == [("city.incidents", b"inc-1"), ("city.tasks", b"inc-1")]
    assert transaction["offsets"] == {TP: 11, "group": "group"}
    assert ledger == ["confirm inc-1 after 1 commit(s)"]


async def _note(ledger: list[str], producer: FakeProducer, what: str) -> None:
    ledger.append(f"{what} after {len(producer.committed)} commit(s)")


def test_a_failed_attempt_is_forgotten_and_the_retry_is_sent_once():
    async def run() -> FakeProducer:
        producer = FakeProducer()
        sink = sink_with(producer)
        async with sink.unit({TP: 3}, "group"):
            mark = sink.checkpoint()
            await sink.send_all([("city.tasks", b"a", b"1")])
            sink.rollback(mark)  # the attempt failed after sending: what it sent is dropped
            await sink.send_all([("city.tasks", b"a", b"1")])  # the retry sends it again
        return producer

    (transaction,) = asyncio.run(run()).committed
    assert transaction["records"] == [("city.tasks", b"a")]


def test_a_unit_that_raises_commits_nothing_and_the_ledger_hears_nothing():
    async def run() -> tuple[FakeProducer, list[str]]:
        producer, ledger = FakeProducer(), []
        sink = sink_with(producer)
        with pytest.raises(RuntimeError):
            async with sink.unit({TP: 5}, "group"):
                await sink.send_all([("city.tasks", b"a", b"1")])
                await delivered(sink, lambda: _note(ledger, producer, "confirm"))
                raise RuntimeError("the batch failed")
        return producer, ledger

    producer, ledger = asyncio.run(run())
    assert producer.committed == [] and ledger == []


def test_a_refused_commit_is_retried_with_the_same_records():
    async def run() -> FakeProducer:
        producer = FakeProducer(refuse_commits=2)
        sink = sink_with(producer)
        async with sink.unit({TP: 7}, "group"):
            await sink.send_all([("city.tasks", b"a", b"1")])
        return producer

    producer = asyncio.run(run())
    assert [t["records"] for t in producer.committed] == [[("city.tasks", b"a")]]


def test_output_outside_a_unit_is_refused_and_the_at_least_once_sink_confirms_at_once():
    async def run() -> list[str]:
        with pytest.raises(RuntimeError, match="inside TransactionalSink.unit"):
            await sink_with(FakeProducer()).send_all([("t", b"k", b"v")])
        ledger: list[str] = []

        async def note() -> None:
            ledger.append("now")

        await delivered(FaustSink(app=None), note)
        return ledger

    assert asyncio.run(run()) == ["now"]
