"""Merging throughput against a Redis holding many open incidents.

Fills the index with N open incidents (default 100,000) spread over a
30 km x 30 km city in 15 categories, then times batches of new reports (half
near an open incident of their category, half somewhere new) through
``RedisIncidentIndex.merge_or_open`` (one pipelined round trip per batch). The
baseline is the same script called once per report (a round trip each).

    python -m bench.bench_merge --open 100000 --reports 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from bench.common import redis_server
from classifiers.merge import merge_tokens
from classifiers.store import RedisIncidentIndex, Sighting

CATEGORIES = [f"cat{i}" for i in range(15)]
WORDS = ["pothole", "flooded", "street", "light", "garbage", "noise", "tree", "car", "drain", "graffiti", "water"]
LAT0, LON0, SPAN_LAT, SPAN_LON = 40.5, -74.2, 0.27, 0.36  # ~30 km x 30 km


def sighting(rng: random.Random, sid: str, ts: float, near: tuple[float, float, str] | None) -> Sighting:
    if near is None:
        lat, lon, category = LAT0 + rng.random() * SPAN_LAT, LON0 + rng.random() * SPAN_LON, rng.choice(CATEGORIES)
    else:
        lat, lon, category = near[0] + rng.gauss(0, 0.0004), near[1] + rng.gauss(0, 0.0005), near[2]
    text = " ".join(rng.sample(WORDS, 4))
    return Sighting(f"report:{sid}", f"inc-{sid}", category, category, lat, lon, ts, 150.0, 10800.0, merge_tokens(text))


async def open_count(client: aioredis.Redis, namespace: str) -> int:
    return sum([await client.zcard(f"{namespace}:open:{c}") for c in CATEGORIES])


async def fill(
    index: RedisIncidentIndex, client: aioredis.Redis, namespace: str, rng: random.Random, count: int, ts: float
) -> list[tuple[float, float, str]]:
    """Add random reports until ``count`` incidents are open (nearby ones merge, so it takes more)."""
    placed: list[tuple[float, float, str]] = []
    i = 0
    while (missing := count - await open_count(client, namespace)) > 0:
        batch = [sighting(rng, f"seed{i + k}", ts, None) for k in range(min(missing, 2000))]
        i += len(batch)
        decisions = await index.merge_or_open(batch)
        placed += [(d.lat, d.lon, d.category) for d in decisions if d.opened]
    return placed


async def main_async(args: argparse.Namespace) -> dict:
    client = aioredis.Redis.from_url(args.redis)
    namespace = f"benchmerge{uuid.uuid4().hex[:6]}"
    index = RedisIncidentIndex(client, namespace, ttl_s=3600)
    rng = random.Random(7)
    ts = 1_790_000_000.0
    try:
        started = time.perf_counter()
        placed = await fill(index, client, namespace, rng, args.open, ts)
        fill_s = time.perf_counter() - started
        opened = await open_count(client, namespace)
        batched, single = [], []
        joined = 0
        for rep in range(args.repeats):
            reports = [
                sighting(rng, f"r{rep}-{i}", ts + 60, rng.choice(placed) if i % 2 == 0 else None)
                for i in range(args.reports)
            ]
            t = time.perf_counter()
            decisions = []
            for start in range(0, len(reports), args.batch):
                decisions += await index.merge_or_open(reports[start : start + args.batch])
            batched.append(len(reports) / (time.perf_counter() - t))
            joined += sum(not d.opened for d in decisions)
            few = [sighting(rng, f"s{rep}-{i}", ts + 60, rng.choice(placed)) for i in range(args.reports // 10)]
            t = time.perf_counter()
            for one in few:
                await index.merge_or_open([one])
            single.append(len(few) / (time.perf_counter() - t))
        return {
            "open_incidents": opened,
            "fill_seconds": round(fill_s, 1),
            "batch": args.batch,
            "batched_per_s_median": round(statistics.median(batched)),
            "batched_per_s_runs": [round(x) for x in batched],
            "one_round_trip_each_per_s_median": round(statistics.median(single)),
            "speedup": round(statistics.median(batched) / statistics.median(single), 1),
            "joined_share": round(joined / (args.reports * args.repeats), 3),
        }
    finally:
        cursor = 0
        while True:
            cursor, keys = await client.scan(cursor, match=f"{namespace}:*", count=5000)
            if keys:
                await client.delete(*keys)
            if cursor == 0:
                break
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=100_000, help="open incidents to fill the index with")
    parser.add_argument("--reports", type=int, default=20_000, help="reports per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    with redis_server(args.redis) as args.redis:
        result = asyncio.run(main_async(args))
    print(f"open incidents in Redis          {result['open_incidents']:>10,}")
    rate = result["batched_per_s_median"]
    print(f"merge, batches of {args.batch:<5}          {rate:>10,} reports/s (median of {args.repeats})")
    print(f"merge, one round trip per report {result['one_round_trip_each_per_s_median']:>10,} reports/s")
    share = result["joined_share"]
    print(f"speed-up                         {result['speedup']:>10}x; {share:.0%} of reports joined an incident")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
