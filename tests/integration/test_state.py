"""The Redis ledger and detector store against the real Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from classifiers import DetectorState, seed_classifier
from classifiers.store import RedisIncidentIndex
from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.engine import BatchResult, Engine
from streams.outcomes import Envelope
from streams.state import NEW, RESEND, SENT, DetectorStore, Ledger, TriageQueue
from streams.topics import Topics

pytestmark = pytest.mark.integration


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_ledger_new_then_resend_stored_then_sent(namespace, redis_url):
    """First claim stores; an unconfirmed key resends the *stored* outcome; a confirmed one is skipped."""

    async def scenario() -> list[tuple[int, dict]]:
        client = aioredis.Redis.from_url(redis_url)
        ledger = Ledger(client, namespace, ttl_s=600)
        first = await ledger.claim([("report:1", {"unit": "roads-west"})])
        again = await ledger.claim([("report:1", {"unit": "SOMETHING ELSE"})])
        await ledger.confirm(["report:1"])
        third = await ledger.claim([("report:1", {"unit": "SOMETHING ELSE"})])
        await client.aclose()
        return [(c.status, c.payload) for c in first + again + third]

    assert run(scenario()) == [
        (NEW, {"unit": "roads-west"}),
        (RESEND, {"unit": "roads-west"}),
        (SENT, {"unit": "roads-west"}),
    ]


def test_detector_state_round_trips(namespace, redis_url):
    async def scenario() -> dict[str, DetectorState]:
        client = aioredis.Redis.from_url(redis_url)
        store = DetectorStore(client, namespace)
        await store.save({"s1": DetectorState(True, 100.5, 120.25)})
        states = await store.load(["s1", "never-seen"])
        await client.aclose()
        return states

    states = run(scenario())
    assert states["s1"] == DetectorState(True, 100.5, 120.25)
    assert states["never-seen"] == DetectorState()


class FlakySink:
    """Keeps what it is sent; the first batch's delivery fails, as a broker outage would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_next = True

    async def send(self, topic: str, key: bytes, value: bytes):  # type: ignore[no-untyped-def]
        self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_next:
            future.set_exception(ConnectionError("broker went away"))
        else:
            future.set_result(None)
        return future


def test_a_batch_whose_delivery_failed_is_sent_again_with_the_same_outcome(namespace, redis_url, tmp_path):
    """The agent retries a failed batch; the retry resends the stored outcome, then it counts as done."""
    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    report = {
        "report_id": "r-9",
        "source": "app",
        "text": "big pothole",
        "lat": 51.99,
        "lon": 5.06,
        "reported_at": "2026-11-26T09:00:00Z",
        "service_code": "pothole",
    }
    envelope = Envelope(json.dumps(report).encode(), b"r-9", "x.reports", 0, 7, None)
    clock_values = iter([datetime(2026, 11, 26, 9, 1, tzinfo=UTC), datetime(2026, 11, 26, 9, 5, tzinfo=UTC)] * 3)

    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        sink = FlakySink()
        engine = Engine(
            pack,
            seed_classifier(),
            Ledger(client, namespace, 600),
            DetectorStore(client, namespace),
            RedisIncidentIndex(client, namespace),
            TriageQueue(client, namespace, 600),
            sink,
            Topics(namespace),
            clock=lambda: next(clock_values),
        )
        with pytest.raises(ConnectionError):
            await engine.process_reports([envelope])
        sink.fail_next = False
        retried = await engine.process_reports([envelope])
        replayed = await engine.process_reports([envelope])
        await client.aclose()
        return sink, retried, replayed

    sink, retried, replayed = run(scenario())
    first_tasks = [json.loads(v) for t, _, v in sink.sent[:3] if t.endswith(".tasks")]
    retry_tasks = [json.loads(v) for t, _, v in sink.sent[3:] if t.endswith(".tasks")]
    assert len(sink.sent) == 6, "three records, sent twice: once failed, once delivered"
    assert first_tasks == retry_tasks, "the retry carries the stored outcome, dispatch time included"
    assert retried.tasks == 1 and replayed.duplicates == 1 and replayed.emitted == 0


def test_a_record_that_keeps_failing_is_dead_lettered_and_the_rest_go_on(namespace, redis_url, tmp_path):
    """Not a broker or Redis outage: after a few tries the batch is split and only the culprit is dead-lettered."""
    from streams.app import _process

    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    envelopes = [Envelope(f'{{"n": {i}}}'.encode(), None, "x.reports", 0, i, None) for i in range(5)]
    handled: list[int] = []

    async def handle(batch):  # type: ignore[no-untyped-def]
        if any(e.offset == 3 for e in batch):
            raise ValueError("cannot digest record 3")
        handled.extend(e.offset for e in batch)
        return BatchResult(consumed=len(batch))

    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        sink = FlakySink()
        sink.fail_next = False
        engine = Engine(pack, seed_classifier(), Ledger(client, namespace, 600), DetectorStore(client, namespace),
                        RedisIncidentIndex(client, namespace), TriageQueue(client, namespace, 600), sink,
                        Topics(namespace))  # fmt: skip
        result = await _process("reports", handle, engine, envelopes)
        await client.aclose()
        return sink, result

    sink, result = run(scenario())
    assert handled == [0, 1, 2, 4]
    assert result.dead_lettered == 1
    (dead,) = [json.loads(v) for t, _, v in sink.sent if t.endswith(".deadletter")]
    assert dead["offset"] == 3 and dead["stage"] == "internal" and "cannot digest record 3" in dead["reason"]
    assert dead["original"] == '{"n": 3}'
