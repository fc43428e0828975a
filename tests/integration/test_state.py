"""The Redis ledger and detector store against the real Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from classifiers import DetectorState, seed_classifier
from classifiers.store import RedisIncidentIndex
from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.citypolicy import policy_for
from streams.engine import BatchResult, Engine
from streams.outcomes import Envelope
from streams.settings import load_settings
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
    async def scenario() -> dict[str, tuple[DetectorState, bytes | None]]:
        client = aioredis.Redis.from_url(redis_url)
        store = DetectorStore(client, namespace)
        await store.save({"s1": DetectorState(True, 100.5, 120.25)})
        states = await store.load(["s1", "never-seen"])
        await client.aclose()
        return states

    states = run(scenario())
    assert states["s1"] == (DetectorState(True, 100.5, 120.25), None)
    assert states["never-seen"] == (DetectorState(), None)


class FlakySink:
    """Keeps what it is sent; the first batch's delivery fails, as a broker outage would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_next = True

    async def send_all(self, records) -> None:  # type: ignore[no-untyped-def]
        self.sent.extend(records)
        if self.fail_next:
            raise ConnectionError("broker went away")


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
            policy_for(pack, load_settings()),
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
                        Topics(namespace), policy_for(pack, load_settings()))  # fmt: skip
        result = await _process("reports", handle, engine, envelopes)
        await client.aclose()
        return sink, result

    sink, result = run(scenario())
    assert handled == [0, 1, 2, 4]
    assert result.dead_lettered == 1
    (dead,) = [json.loads(v) for t, _, v in sink.sent if t.endswith(".deadletter")]
    assert dead["offset"] == 3 and dead["stage"] == "internal" and "cannot digest record 3" in dead["reason"]
    assert dead["original"] == '{"n": 3}'


def test_an_adaptive_sensor_learns_its_day_across_batches_and_alarms_at_an_odd_hour(namespace, redis_url, tmp_path):
    """Five days of a daily noise cycle, one batch a day through Redis; then the evening peak at 4 am alarms.

    The learnt pattern survives between batches (it is stored in Redis), the
    regular evening peak never alarms, and the alarm carries the pattern method.
    """
    import yaml

    city = write_demo_city(tmp_path / "city")
    document = yaml.safe_load((city / "city.yaml").read_text())
    document["sensor_kinds"]["hum"] = {"category": "noise", "detector": "adaptive", "direction": "above"}
    (city / "city.yaml").write_text(yaml.safe_dump(document))
    pack = load_city_pack(city)
    start = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)

    def level(hour: int) -> float:
        return 70.0 if 18 <= hour <= 22 else 45.0  # loud every evening (local time is UTC+1 here)

    def day(d: int) -> list[Envelope]:
        batch = []
        for minutes in range(0, 24 * 60, 20):
            moment = start.timestamp() + d * 86400 + minutes * 60
            local_hour = int(((moment + 3600) % 86400) // 3600)
            value = level(local_hour) + ((minutes // 20) % 3) * 0.5
            stamp = datetime.fromtimestamp(moment, UTC).isoformat()
            record = {
                "sensor_id": "hum-1",
                "kind": "hum",
                "value": value,
                "lat": 51.99,
                "lon": 5.06,
                "observed_at": stamp,
            }
            batch.append(Envelope(json.dumps(record).encode(), b"hum-1", "x.readings", 0, d * 100 + minutes, None))
        return batch

    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        sink = FlakySink()
        sink.fail_next = False
        engine = Engine(pack, seed_classifier(), Ledger(client, namespace, 600), DetectorStore(client, namespace),
                        RedisIncidentIndex(client, namespace), TriageQueue(client, namespace, 600), sink,
                        Topics(namespace), policy_for(pack, load_settings()),
                        clock=lambda: start + timedelta(days=8))  # fmt: skip
        for d in range(5):
            await engine.process_readings(day(d))
        learnt_alarms = [v for t, _, v in sink.sent if t.endswith(".tasks")]
        odd = []
        for i, minutes in enumerate(range(5 * 24 * 60 + 3 * 60, 5 * 24 * 60 + 4 * 60, 10)):  # 03:00-04:00 UTC
            moment = start.timestamp() + minutes * 60
            record = {"sensor_id": "hum-1", "kind": "hum", "value": 71.0, "lat": 51.99, "lon": 5.06,
                      "observed_at": datetime.fromtimestamp(moment, UTC).isoformat()}  # fmt: skip
            odd.append(Envelope(json.dumps(record).encode(), b"hum-1", "x.readings", 0, 10_000 + i, None))
        await engine.process_readings(odd)
        stored = await client.hget(f"{namespace}:sensor:hum-1", "model")
        await client.aclose()
        return learnt_alarms, [json.loads(v) for t, _, v in sink.sent if t.endswith(".incidents")], stored

    learnt_alarms, incidents, stored = run(scenario())
    assert learnt_alarms == [], "the regular evening peak is the sensor's normal day"
    assert len(incidents) == 1 and incidents[0]["classified_by"] == "sensor_pattern"
    assert stored and stored.startswith(b"AD")
