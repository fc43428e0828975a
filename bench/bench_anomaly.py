"""Readings per second of the adaptive sensor detector: the numpy batch API against per-reading Python.

A fleet of sensors (default 10,000) with daily cycles, noise and occasional
excursions is warmed up for four days of hourly readings, then every method
applies the same next readings (default 20 per sensor, every 5 minutes,
in arrival order: sensors interleaved, each sensor's in time order) to the same warmed
states, in one process on one core:

* ``step (per reading)``: the baseline, ``AdaptiveDetector.step`` in a Python
  loop: the same maths, reading by reading.
* ``step_readings (whole set)``: one call for all the readings.
* ``step_many (one round per call)``: the kernel, one reading per sensor per call.
* ``engine-like``: batches of ``--batch`` readings (the worker's default
  batch size): the batch's states decoded from bytes (``AdaptiveBank.from_bytes``),
  stepped with ``step_readings`` and encoded again, as a worker round-tripping
  Redis values would (without the Redis calls); and the same with ``step``
  and ``AdaptiveState.from_bytes/to_bytes`` per reading.

Each method runs ``--repeat`` times (at least 5); the table shows medians.
The batch methods and the baseline must agree on every alarm change.

    python -m bench.bench_anomaly [--sensors 10000 --readings 20 --repeat 5 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classifiers import AdaptiveBank, AdaptiveDetector, AdaptiveState, AlarmChange, step_many, step_readings
from classifiers.anomaly_bank import OPENED_CODE

DAY = 86400.0
START = 1_700_006_400.0


def fleet_values(rng: np.random.Generator, phase: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Sensor readings at ``times`` (sensors x readings): daily cycle, noise, some excursions."""
    cycle = 30.0 * np.sin(2 * np.pi * (times % DAY / DAY + phase[:, None]))
    values = 100.0 + cycle + rng.normal(0.0, 2.0, times.shape)
    excursion = rng.random(times.shape) < 0.01
    return values + np.where(excursion | np.roll(excursion, 1, axis=1), 60.0, 0.0)


def workload(sensors: int, readings: int, seed: int) -> tuple[AdaptiveDetector, AdaptiveBank, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    detector = AdaptiveDetector()
    phase = rng.random(sensors)
    warm_times = START + np.arange(4 * 24) * 3600.0 + rng.uniform(0, 60, (sensors, 1))
    bank = AdaptiveBank.fresh(sensors, detector.buckets)
    for column in range(warm_times.shape[1]):
        values = fleet_values(rng, phase, warm_times[:, column : column + 1])[:, 0]
        bank = step_many(detector, bank, values, warm_times[:, column]).bank
    times = warm_times[:, -1:] + 300.0 * np.arange(1, readings + 1)
    values = fleet_values(rng, phase, times)
    rows = np.repeat(np.arange(sensors), readings)
    order = np.argsort(times.ravel(), kind="stable")  # arrival order: sensors interleaved, each in time order
    batch = {"rows": rows[order], "values": values.ravel()[order], "times": times.ravel()[order]}
    return detector, bank, batch


def per_reading(detector: AdaptiveDetector, states: list[AdaptiveState], batch: dict[str, np.ndarray]) -> int:
    states = list(states)
    opened = 0
    readings = zip(batch["rows"].tolist(), batch["values"].tolist(), batch["times"].tolist(), strict=True)
    for row, value, observed in readings:
        states[row], change = detector.step(states[row], value, observed)
        opened += change is AlarmChange.OPENED
    return opened


def whole_set(detector: AdaptiveDetector, bank: AdaptiveBank, batch: dict[str, np.ndarray]) -> int:
    result = step_readings(detector, bank, batch["rows"], batch["values"], batch["times"])
    return int((result.changes == OPENED_CODE).sum())


def rounds(detector: AdaptiveDetector, bank: AdaptiveBank, by_round: list[tuple[np.ndarray, np.ndarray]]) -> int:
    opened = 0
    for values, times in by_round:
        step = step_many(detector, bank, values, times)
        bank = step.bank
        opened += int((step.changes == OPENED_CODE).sum())
    return opened


def engine_like(detector: AdaptiveDetector, stored: list[bytes], batch: dict[str, np.ndarray], size: int) -> int:
    """Batches as a worker sees them: decode the batch's sensors, step them together, encode them again."""
    stored = list(stored)
    opened = 0
    for start in range(0, len(batch["rows"]), size):
        rows = batch["rows"][start : start + size]
        sensors, local = np.unique(rows, return_inverse=True)
        bank = AdaptiveBank.from_bytes([stored[s] for s in sensors.tolist()], detector.buckets)
        values, times = batch["values"][start : start + size], batch["times"][start : start + size]
        result = step_readings(detector, bank, local, values, times)
        opened += int((result.changes == OPENED_CODE).sum())
        for sensor, blob in zip(sensors.tolist(), result.bank.to_bytes(), strict=True):
            stored[sensor] = blob
    return opened


def engine_like_per_reading(detector: AdaptiveDetector, stored: list[bytes], batch: dict[str, np.ndarray]) -> int:
    """The same with ``step``: decode a sensor's state, step one reading, encode it again."""
    stored = list(stored)
    opened = 0
    readings = zip(batch["rows"].tolist(), batch["values"].tolist(), batch["times"].tolist(), strict=True)
    for row, value, observed in readings:
        state, change = detector.step(AdaptiveState.from_bytes(stored[row]), value, observed)
        stored[row] = state.to_bytes()
        opened += change is AlarmChange.OPENED
    return opened


def timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    seconds, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = call()
        seconds.append(time.perf_counter() - started)
    return seconds, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=20, help="readings per sensor")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500, help="readings per engine-like batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    args = parser.parse_args()
    repeat = max(args.repeat, 5)

    print(f"warming {args.sensors:,} sensors ...", file=sys.stderr)
    detector, bank, batch = workload(args.sensors, args.readings, args.seed)
    count = len(batch["rows"])
    states = bank.states()
    stored = [state.to_bytes() for state in states]
    by_round = []
    order = np.lexsort((batch["times"], batch["rows"]))
    for r in range(args.readings):  # every sensor has the same count, so round r is every row's r-th reading
        picked = order[r :: args.readings]
        by_round.append((batch["values"][picked], batch["times"][picked]))

    methods: dict[str, tuple[list[float], Any]] = {}
    print("step (per reading) ...", file=sys.stderr)
    methods["step (per reading, baseline)"] = timed(lambda: per_reading(detector, states, batch), repeat)
    print("batch API ...", file=sys.stderr)
    methods["step_readings (whole set)"] = timed(lambda: whole_set(detector, bank, batch), repeat)
    methods["step_many (one round per call)"] = timed(lambda: rounds(detector, bank, by_round), repeat)
    methods[f"engine-like: batches of {args.batch}, bytes in/out"] = timed(
        lambda: engine_like(detector, stored, batch, args.batch), repeat
    )
    methods["engine-like: step per reading, bytes in/out"] = timed(
        lambda: engine_like_per_reading(detector, stored, batch), repeat
    )

    opened = {name: answer for name, (_, answer) in methods.items()}
    if len(set(opened.values())) != 1:
        raise SystemExit(f"methods disagree on alarms opened: {opened}")
    baseline = statistics.median(methods["step (per reading, baseline)"][0])
    rows = []
    for name, (seconds, _) in methods.items():
        median = statistics.median(seconds)
        rows.append(
            {
                "method": name,
                "median_s": median,
                "readings_per_s": count / median,
                "speedup": baseline / median,
                "seconds": seconds,
            }
        )
    print(f"\n{args.sensors:,} sensors x {args.readings} readings = {count:,} readings; {repeat} runs each, medians")
    print(f"alarms opened by every method: {next(iter(opened.values()))}")
    print(f"{'method':<48}{'median s':>10}{'readings/s':>14}{'x baseline':>12}")
    for row in rows:
        print(f"{row['method']:<48}{row['median_s']:>10.4f}{row['readings_per_s']:>14,.0f}{row['speedup']:>12.1f}")
    if args.json_out:
        result = {
            "benchmark": "bench_anomaly",
            "sensors": args.sensors,
            "readings_per_sensor": args.readings,
            "readings": count,
            "repeat": repeat,
            "engine_batch": args.batch,
            "alarms_opened": next(iter(opened.values())),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "results": rows,
        }
        Path(args.json_out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
