"""The engine alone: batches of reports or readings through discovery and dispatch, real Redis, no broker.

Separates CityLoop's own per-record cost from the broker's: the sink resolves
every send at once. The workloads are bench/common.py's (a day of reports, one
in three a repeat; readings from 2,000 sensors on static thresholds).

``--kind adaptive`` times ``Engine.process_readings`` on sensors of the demo
city's adaptive kind (pm25: the learnt daily pattern and the health limits)
with stage *detect* stepping them reading by reading (``Detect(bank=False)``)
and in a bank (the worker's path), alternated in one run, each run from the
same warmed states (four days of hourly readings, stored in Redis before the
clock starts). Besides readings/s it prints the share of the time spent in the
detect stage and in loading and saving detector state, and checks that both
paths sent the same records.

    python -m bench.bench_engine --kind reports --count 20000
    python -m bench.bench_engine --kind adaptive --count 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from bench.common import drop_namespace, reading_records, redis_server, report_records
from classifiers import AdaptiveBank, AdaptiveDetector, AdaptiveState, seed_classifier, step_many
from classifiers.store import RedisIncidentIndex
from classifiers.triage import TriagePolicy
from dispatch import load_city_pack
from dispatch.demo_city import bounds, write_demo_city
from streams.citypolicy import policy_for
from streams.engine import Engine
from streams.outcomes import Envelope
from streams.pipeline.detect import Detect, Detected
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


ADAPTIVE_KIND = "pm25"
WARM_START = 1_790_000_000.0  # 2026-09-21; the timed readings follow four days of warm-up


def pm25_values(phase: np.ndarray, times: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A daily cycle on the city's clock (35 +- 12 ug/m3), noise, and now and then a reading past the limit (75)."""
    local_hour = (times + offsets) % 86400.0 / 3600.0
    values = 35.0 + 12.0 * np.sin(2 * np.pi * (local_hour / 24.0 + phase)) + rng.normal(0.0, 2.0, times.shape)
    return values + np.where(rng.random(times.shape) < 0.002, 60.0, 0.0)


def adaptive_fleet(detector: AdaptiveDetector, zone: Any, sensors: int, count: int, seed: int = 7) -> tuple[
        list[AdaptiveState], list[tuple[int, float, float]]]:  # fmt: skip
    """Warmed states of ``sensors`` pm25 sensors, and ``count`` readings after them: (sensor, value, epoch time),
    the sensors in turn, each every 5 minutes."""
    rng = np.random.default_rng(seed)
    phase = rng.random(sensors)
    bank = AdaptiveBank.fresh(sensors, detector.buckets)

    def offset(epoch: float) -> float:
        delta = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
        return delta.total_seconds() if delta else 0.0

    for hour in range(4 * 24):
        times = np.full(sensors, WARM_START + hour * 3600.0) + np.arange(sensors) * 0.01
        offsets = np.full(sensors, offset(times[0]))
        bank = step_many(detector, bank, pm25_values(phase, times, offsets, rng), times, offsets).bank
    start = WARM_START + 4 * 86400.0
    index = np.arange(count)
    sensor = index % sensors
    times = start + (index // sensors) * 300.0 + sensor * 0.01
    offsets = np.array([offset(t) for t in times])
    values = pm25_values(phase[sensor], times, offsets, rng)
    return bank.states(), list(zip(sensor.tolist(), values.tolist(), times.tolist(), strict=True))


def adaptive_envelopes(readings: list[tuple[int, float, float]], run: str) -> list[Envelope]:
    min_lon, min_lat, max_lon, max_lat = bounds()
    out = []
    for i, (sensor, value, observed) in enumerate(readings):
        record = {"sensor_id": f"{run}-a{sensor}", "kind": ADAPTIVE_KIND, "value": round(value, 3), "unit": "ug/m3",
                  "lat": min_lat + (max_lat - min_lat) * (sensor % 50) / 50,
                  "lon": min_lon + (max_lon - min_lon) * (sensor // 50 % 40) / 40,
                  "observed_at": datetime.fromtimestamp(observed, UTC).isoformat()}  # fmt: skip
        out.append(Envelope(json.dumps(record).encode(), None, "b.readings", 0, i, None))
    return out


class TimedDetect:
    """Stage *detect*, adding the seconds it takes to ``spent["detect"]``."""

    def __init__(self, inner: Detect, spent: dict[str, float]) -> None:
        self.inner, self.spent = inner, spent

    def known(self, readings: Any) -> Any:
        return self.inner.known(readings)

    def __call__(self, readings: Any, stored: Any) -> Detected:
        started = time.perf_counter()
        try:
            return self.inner(readings, stored)
        finally:
            self.spent["detect"] += time.perf_counter() - started


class TimedStore(DetectorStore):
    """The detector store, adding the seconds its loads and saves take to ``spent["load"]`` and ``spent["save"]``."""

    def __init__(self, client: aioredis.Redis, namespace: str, spent: dict[str, float]) -> None:
        super().__init__(client, namespace)
        self.spent = spent

    async def load(self, sensor_ids: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().load(sensor_ids)
        finally:
            self.spent["load"] += time.perf_counter() - started

    async def save(self, states: dict[str, Any], latest: Any = None) -> None:
        started = time.perf_counter()
        try:
            await super().save(states, latest)
        finally:
            self.spent["save"] += time.perf_counter() - started


async def run_adaptive(args: argparse.Namespace) -> dict[str, Any]:
    """Both paths of stage *detect* under ``process_readings``, alternated, each run from the same warmed states."""
    pack = load_city_pack(write_demo_city(tempfile.mkdtemp(prefix="cityloop-bench-city-")))
    detector = Detect(pack).detectors[ADAPTIVE_KIND]
    states, readings = adaptive_fleet(detector, pack.zone, args.sensors, args.count)
    client = aioredis.Redis.from_url(args.redis)
    prefix = f"benchengine{uuid.uuid4().hex[:6]}"
    paths = {"per reading": False, "bank": True}
    runs: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
    try:
        for repeat in range(-1, args.repeats):  # repeat -1 warms up, untimed
            order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
            for path in order:
                run = f"{'e' if path == 'per reading' else 'b'}{repeat % 10}"
                namespace = f"{prefix}{run}"  # a store of its own: an alarm must not join the last run's incident
                spent: dict[str, float] = defaultdict(float)
                store = TimedStore(client, namespace, spent)
                await DetectorStore(client, namespace).save({f"{run}-a{i}": s for i, s in enumerate(states)})
                sink = InstantSink()
                engine = Engine(pack, seed_classifier(), Ledger(client, namespace, 3600), store,
                                RedisIncidentIndex(client, namespace, ttl_s=3600), TriageQueue(client, namespace, 3600),
                                sink, Topics(namespace), policy_for(pack, load_settings()),
                                triage_policy=TriagePolicy(0.0))  # fmt: skip
                engine.detect.bank = paths[path]
                engine.detect = TimedDetect(engine.detect, spent)  # type: ignore[assignment]
                envelopes = adaptive_envelopes(readings, run)
                stale = 0
                started = time.perf_counter()
                for start in range(0, len(envelopes), args.batch):
                    stale += (await engine.process_readings(envelopes[start : start + args.batch])).stale
                seconds = time.perf_counter() - started
                await drop_namespace(client, namespace)
                if repeat < 0:
                    continue
                runs[path].append({"seconds": seconds, "per_s": args.count / seconds, "detect_s": spent["detect"],
                                   "load_s": spent["load"], "save_s": spent["save"], "records_out": sink.records,
                                   "bytes_out": sink.bytes, "stale": stale})  # fmt: skip
                print(f"  {path:<12} run {repeat}: {args.count / seconds:>9,.0f} readings/s, "
                      f"detect {spent['detect']:.3f} s of {seconds:.3f} s", flush=True)  # fmt: skip
    finally:
        await drop_namespace(client, prefix)
        await client.aclose()
    sent = {(r["records_out"], r["bytes_out"]) for rs in runs.values() for r in rs}
    if len(sent) != 1:
        raise SystemExit(f"the runs sent different records (records, bytes): {sorted(sent)}")
    summary: dict[str, Any] = {"kind": "adaptive", "sensor_kind": ADAPTIVE_KIND, "sensors": args.sensors,
                               "count": args.count, "batch": args.batch, "repeats": args.repeats,
                               "records_out": runs["bank"][0]["records_out"], "paths": {}}  # fmt: skip
    for path, rs in runs.items():
        median = statistics.median(r["seconds"] for r in rs)
        summary["paths"][path] = {
            "median_per_s": round(args.count / median),
            "runs_per_s": [round(r["per_s"]) for r in rs],
            "detect_share": round(statistics.median(r["detect_s"] / r["seconds"] for r in rs), 3),
            "detect_per_s": round(args.count / statistics.median(r["detect_s"] for r in rs)),
            "load_save_share": round(statistics.median((r["load_s"] + r["save_s"]) / r["seconds"] for r in rs), 3),
        }
    return summary


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
    parser.add_argument("--kind", choices=["reports", "readings", "adaptive"], default="reports")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--sensors", type=int, default=2_000, help="adaptive sensors (--kind adaptive)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    with redis_server(args.redis) as args.redis:
        result = asyncio.run(run_adaptive(args) if args.kind == "adaptive" else run(args))
    if args.kind == "adaptive":
        print(
            f"engine, {args.count:,} {ADAPTIVE_KIND} readings of {args.sensors:,} adaptive sensors, batches of "
            f"{args.batch}, {args.repeats} runs per path (alternated), medians; {result['records_out']} records out"
        )
        print(f"{'detect path':<14}{'readings/s':>12}{'detect stage alone':>20}{'detect share':>14}{'load+save':>11}")
        for path, row in result["paths"].items():
            print(f"{path:<14}{row['median_per_s']:>12,}{row['detect_per_s']:>18,}/s{row['detect_share']:>14.0%}"
                  f"{row['load_save_share']:>11.0%}")  # fmt: skip
        each, bank = (result["paths"][p]["median_per_s"] for p in ("per reading", "bank"))
        print(f"bank / per reading: {bank / each:.2f}x")
    else:
        print(f"engine, {args.kind}: {result['median_per_s']:,}/s median of {result['runs']}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
