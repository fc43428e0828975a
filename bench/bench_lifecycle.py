"""Work-order lifecycle throughput against the real Redis, without a broker (a sink that keeps nothing).

Feeds the lifecycle the feedback records a worker would see, in batches of
500 (the worker's batch size): N ``dispatched`` events (one order each, as the
engine writes them), then an ``ack``, ``start``, ``resolve`` and ``verify``
per order (the verify is followed by its ``close`` in the same step), then lets
the SLA timer fire every order's acknowledge deadlines (moved past them with
the clock). Prints events per second for each phase, medians of several runs.

    python -m bench.bench_lifecycle --orders 20000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import redis_server
from classifiers.store import RedisIncidentIndex
from dispatch import Dispatcher, load_city_pack
from dispatch.demo_city import CATEGORIES, bounds, write_demo_city
from feedback.store import RedisOrderStore
from streams.citypolicy import calendar_of, policy_for
from streams.ids import stable_id, task_id_for
from streams.lifecycle import Lifecycle
from streams.outcomes import Envelope, event
from streams.pipeline.emit import Emitter
from streams.settings import load_settings
from streams.state import Ledger
from streams.timer import SlaTimer
from streams.topics import Topics

BATCH = 500


class NullSink:
    """Acknowledges every record at once."""

    async def send_all(self, records: Any) -> None:
        return None


def envelopes(records: list[dict[str, Any]], topic: str) -> list[Envelope]:
    return [
        Envelope(json.dumps(r).encode(), r["incident_id"].encode(), topic, 0, offset, None)
        for offset, r in enumerate(records)
    ]


async def timed(lifecycle: Lifecycle, records: list[dict[str, Any]], topic: str) -> float:
    items = envelopes(records, topic)
    started = time.perf_counter()
    for start in range(0, len(items), BATCH):
        await lifecycle.process(items[start : start + BATCH])
    return len(items) / (time.perf_counter() - started)


async def one_run(args: argparse.Namespace, pack_dir: Path) -> dict[str, float]:
    pack = load_city_pack(pack_dir)
    settings = load_settings()
    namespace = f"benchlife-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(args.redis)
    calendar = calendar_of(pack)
    now = datetime.now(UTC)
    clock = {"now": now}
    topics = Topics(namespace)
    lifecycle = Lifecycle(
        pack,
        Dispatcher(pack),
        policy_for(pack, settings, calendar),
        RedisOrderStore(client, namespace, calendar),
        RedisIncidentIndex(client, namespace),
        Emitter(Ledger(client, namespace, 3600), NullSink()),
        topics,
        clock=lambda: clock["now"],
    )
    timer = SlaTimer(pack, lifecycle.policy, lifecycle.orders, lifecycle.emit, topics, clock=lambda: clock["now"])
    rng = random.Random(7)
    min_lon, min_lat, max_lon, max_lat = bounds()
    incidents = [stable_id("inc", "bench", str(i)) for i in range(args.orders)]
    dispatched = []
    units = {}
    for i, incident in enumerate(incidents):
        category = CATEGORIES[i % len(CATEGORIES)]["code"]
        lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
        unit = lifecycle.dispatcher.assign(category, lat, lon).unit_id
        units[incident] = unit
        dispatched.append(event("dispatched", incident, "engine", now, task_id=task_id_for(incident), unit_id=unit,
                                attempt=1, category=category, lat=lat, lon=lon, address=None, origin="report",
                                source_id=f"report:{i}", rule="first-covering-unit"))  # fmt: skip
    result: dict[str, float] = {}
    try:
        result["dispatched"] = await timed(lifecycle, dispatched, topics.feedback)
        unit_events = []
        for step, kind in enumerate(("ack", "start", "resolve")):
            at = now + timedelta(minutes=1 + step)
            unit_events += [event(kind, i, f"unit:{units[i]}", at, task_id=task_id_for(i), unit_id=units[i],
                                  key="bench") for i in incidents]  # fmt: skip
        result["unit transitions"] = await timed(lifecycle, unit_events, topics.feedback)
        verify = [event("verify", i, "ops:bench", now + timedelta(minutes=5), key="bench") for i in incidents]
        result["verify (+ close)"] = await timed(lifecycle, verify, topics.feedback)
        # timer: fresh orders whose acknowledge deadlines (yellow and red) all fall due at once
        fresh = [dict(r, incident_id=f"{r['incident_id']}-t", event_id=f"{r['event_id']}-t") for r in dispatched]
        await timed(lifecycle, fresh, topics.feedback)
        clock["now"] = now + timedelta(days=30)
        started = time.perf_counter()
        fired = 0
        while (sent := await timer.fire_due(limit=BATCH)) > 0:
            fired += sent
        result["timer events"] = fired / (time.perf_counter() - started)
        result["timer events emitted"] = fired
    finally:
        keys = [k async for k in client.scan_iter(f"{namespace}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    pack_dir = write_demo_city(Path(f"/tmp/cityloop-bench-lifecycle-{uuid.uuid4().hex[:6]}"))
    with redis_server(args.redis) as args.redis:
        runs = [asyncio.run(one_run(args, pack_dir)) for _ in range(args.runs)]
    summary = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    print(f"{args.orders} orders, batches of {BATCH}, {args.runs} runs (medians; all runs per phase in brackets)")
    for name in runs[0]:
        values = " / ".join(f"{r[name]:,.0f}" for r in runs)
        print(f"  {name:>22}: {summary[name]:>9,.0f}   [{values}]")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"runs": runs, "median": summary}, indent=2))


if __name__ == "__main__":
    main()
