"""The engine alone: batches of reports or readings through discovery and dispatch, real Redis, no broker.

Separates CityLoop's own per-record cost from the broker's: the sink resolves
every send at once. The workloads are bench/common.py's (a day of reports, one
in three a repeat; readings from 2,000 sensors on static thresholds).

    python -m bench.bench_engine --kind reports --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from bench.common import drop_namespace, reading_records, redis_server, report_records
from classifiers import seed_classifier
from classifiers.store import RedisIncidentIndex
from classifiers.triage import TriagePolicy
from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.citypolicy import policy_for
from streams.engine import Engine
from streams.outcomes import Envelope
from streams.settings import load_settings
from streams.state import DetectorStore, Ledger, TriageQueue
from streams.topics import Topics


class InstantSink:
    """Every send is delivered at once; counts bytes."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    async def send_all(self, records: Any) -> None:
        self.records += len(records)
        self.bytes += sum(len(value) for _, _, value in records)


def report_envelopes(count: int, run: str) -> list[Envelope]:
    now = time.time()
    return [Envelope(json.dumps(r).encode(), None, "b.reports", 0, i, now) for i, r in
            enumerate(report_records(count, run))]  # fmt: skip


def reading_envelopes(count: int, run: str) -> list[Envelope]:
    return [Envelope(json.dumps(r).encode(), None, "b.readings", 0, i, None) for i, r in
            enumerate(reading_records(count, run))]  # fmt: skip


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
                            sink, Topics(namespace), policy_for(pack, load_settings()),
                            triage_policy=TriagePolicy(0.0))  # fmt: skip
            make = report_envelopes if args.kind == "reports" else reading_envelopes
            envelopes = make(args.count, f"r{repeat}")
            process = engine.process_reports if args.kind == "reports" else engine.process_readings
            started = time.perf_counter()
            for start in range(0, len(envelopes), args.batch):
                await process(envelopes[start : start + args.batch])
            rates.append(args.count / (time.perf_counter() - started))
    finally:
        await drop_namespace(client, namespace)
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
    with redis_server(args.redis) as args.redis:
        result = asyncio.run(run(args))
    print(f"engine, {args.kind}: {result['median_per_s']:,}/s median of {result['runs']}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
