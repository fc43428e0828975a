"""The engine alone: batches of reports or readings through discovery and dispatch, real Redis, no broker.

Separates CityLoop's own per-record cost from Faust's and the broker's: the
sink resolves every send at once. Reports are spread over the demo city with
one in three a neighbour's repeat of an earlier problem (so merging is
exercised); readings come from 2,000 sensors on static thresholds.

    python -m bench.bench_engine --kind reports --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from classifiers import seed_classifier
from classifiers.store import RedisIncidentIndex
from classifiers.triage import TriagePolicy
from dispatch import load_city_pack
from dispatch.demo_city import CATEGORIES, bounds, write_demo_city
from streams.engine import Engine
from streams.outcomes import Envelope
from streams.state import DetectorStore, Ledger, TriageQueue
from streams.topics import Topics


class InstantSink:
    """Every send is delivered at once; counts bytes."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    async def send(self, topic: str, key: bytes, value: bytes) -> Any:
        self.records += 1
        self.bytes += len(value)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def report_envelopes(count: int, run: str) -> list[Envelope]:
    rng = random.Random(5)
    min_lon, min_lat, max_lon, max_lat = bounds()
    now = datetime.now(UTC).isoformat()
    texts = ["deep pothole near the school", "street light out", "bins overflowing", "flooded underpass", "loud music"]
    problems: list[tuple[float, float, str]] = []
    result = []
    for i in range(count):
        if problems and i % 3 == 2:
            lat, lon, code = rng.choice(problems)
            lat, lon = lat + rng.gauss(0, 0.0003), lon + rng.gauss(0, 0.0004)
        else:
            lat, lon, code = (
                rng.uniform(min_lat, max_lat),
                rng.uniform(min_lon, max_lon),
                rng.choice(CATEGORIES)["code"],
            )
            problems.append((lat, lon, code))
        record = {"report_id": f"{run}-{i}", "source": "app", "text": rng.choice(texts), "lat": lat, "lon": lon,
                  "reported_at": now}  # fmt: skip
        if i % 2:
            record["service_code"] = code
        result.append(Envelope(json.dumps(record).encode(), None, "b.reports", 0, i, time.time()))
    return result


def reading_envelopes(count: int, run: str) -> list[Envelope]:
    rng = random.Random(6)
    min_lon, min_lat, max_lon, max_lat = bounds()
    result = []
    for i in range(count):
        sensor = i % 2000
        record = {"sensor_id": f"{run}-s{sensor}", "kind": "water_level", "value": rng.uniform(0, 25), "unit": "cm",
                  "lat": min_lat + (max_lat - min_lat) * (sensor % 50) / 50,
                  "lon": min_lon + (max_lon - min_lon) * (sensor // 50) / 40,
                  "observed_at": datetime.fromtimestamp(1_790_000_000 + i, UTC).isoformat()}  # fmt: skip
        result.append(Envelope(json.dumps(record).encode(), None, "b.readings", 0, i, None))
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pack = load_city_pack(write_demo_city(tempfile.mkdtemp(prefix="cityloop-bench-city-")))
    client = aioredis.Redis.from_url(args.redis)
    namespace = f"benchengine{uuid.uuid4().hex[:6]}"
    rates = []
    sink = InstantSink()
    try:
        for repeat in range(args.repeats):
            engine = Engine(pack, seed_classifier(), Ledger(client, namespace, 3600), DetectorStore(client, namespace),
                            RedisIncidentIndex(client, namespace, ttl_s=3600), TriageQueue(client, namespace, 3600),
                            sink, Topics(namespace), triage_policy=TriagePolicy(0.0))  # fmt: skip
            make = report_envelopes if args.kind == "reports" else reading_envelopes
            envelopes = make(args.count, f"r{repeat}")
            process = engine.process_reports if args.kind == "reports" else engine.process_readings
            started = time.perf_counter()
            for start in range(0, len(envelopes), args.batch):
                await process(envelopes[start : start + args.batch])
            rates.append(args.count / (time.perf_counter() - started))
    finally:
        cursor = 0
        while True:
            cursor, keys = await client.scan(cursor, match=f"{namespace}:*", count=5000)
            if keys:
                await client.delete(*keys)
            if cursor == 0:
                break
        await client.aclose()
    median = round(statistics.median(rates))
    return {"kind": args.kind, "count": args.count, "batch": args.batch, "median_per_s": median,
            "runs": [round(r) for r in rates], "records_out": sink.records, "bytes_out": sink.bytes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["reports", "readings"], default="reports")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"engine, {args.kind}: {result['median_per_s']:,}/s median of {result['runs']}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
