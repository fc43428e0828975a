"""The ingest in exactly-once mode: a rebalance waits for the unit in flight, and a unit commits offsets only for
partitions the worker still holds (the new owner starts from the last commit; both committing would repeat output)."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from contextlib import asynccontextmanager

from aiokafka.structs import TopicPartition

from streams.ingest import BatchIngest

Message = namedtuple("Message", "topic partition offset key value timestamp")
A, B = TopicPartition("city.reports", 0), TopicPartition("city.reports", 1)


class RecordingSink:
    """Stands in for TransactionalSink: records each unit's offsets when it commits."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    @asynccontextmanager
    async def unit(self, offsets, group_id):
        yield
        self.commits.append(dict(offsets))


class Consumer:
    async def position(self, tp: TopicPartition) -> int:
        return 0  # behind the records: the offsets come from the last record


def ingest(handler) -> tuple[BatchIngest, RecordingSink]:
    sink = RecordingSink()
    service = BatchIngest(kafka="127.0.0.1:1", group_id="g", handlers={"city.reports": handler}, batch_size=10,
                          fetch_max_wait_ms=10, transactions=sink)  # fmt: skip
    service.consumer = Consumer()  # type: ignore[assignment]
    service.offsets.assign({A, B})
    return service, sink


def batch(tp: TopicPartition, *offsets: int) -> list[Message]:
    return [Message(tp.topic, tp.partition, o, b"k", b"{}", None) for o in offsets]


def test_a_rebalance_waits_for_the_unit_in_flight_which_commits_while_it_still_holds_the_partitions():
    async def run() -> tuple[list[str], list[dict]]:
        started, release, order = asyncio.Event(), asyncio.Event(), []

        async def handler(envelopes) -> None:
            started.set()
            await release.wait()
            order.append("unit done")

        service, sink = ingest(handler)
        handling = asyncio.create_task(service._handle({A: batch(A, 5, 6), B: batch(B, 9)}))
        await started.wait()
        revoking = asyncio.create_task(service.revoked({A, B}))
        await asyncio.sleep(0.05)
        order.append("revoke returned" if revoking.done() else "revoke waits")
        release.set()
        await asyncio.gather(handling, revoking)
        order.append("revoked")
        return order, sink.commits

    order, commits = asyncio.run(run())
    assert order == ["revoke waits", "unit done", "revoked"]
    assert commits == [{A: 7, B: 10}]


def test_records_of_a_partition_taken_away_before_their_unit_are_left_to_the_new_owner():
    async def run() -> tuple[list, list[dict]]:
        seen: list = []

        async def handler(envelopes) -> None:
            seen.extend((e.partition, e.offset) for e in envelopes)

        service, sink = ingest(handler)
        await service.revoked({B})  # between the fetch and the unit
        await service._handle({A: batch(A, 5), B: batch(B, 9)})
        return seen, sink.commits

    seen, commits = asyncio.run(run())
    assert seen == [(0, 5)] and commits == [{A: 6}]
