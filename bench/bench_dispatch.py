"""Dispatch throughput on a pack with thousands of polygons, against a naive loop over polygons in the same run.

    python -m bench.bench_dispatch [--cols 50 --rows 42 --points 50000 --repeat 5] [--json results.json]

The pack is synthetic (bench/grid_city.py): ``cols * rows`` block polygons plus a
coarse ward layer with rules. Timed: ``Dispatcher.assign_batch`` on a batch of
random points and categories, with everything it does in production (rules,
service areas, boundary band in metres, distance to the edge, explanations),
once without and once with loads and positions (capacity and nearest team).
Two naive baselines loop over the polygons with shapely, no index: "same decision"
visits every block for each point (``contains`` for the block, distance in metres
for the band) and returns the owning team and the teams to co-notify, like the
dispatcher's service-area step; "locate only" stops at the first block that contains
the point and skips the band, so the speed-up over it is a lower bound. Neither
applies rules or writes explanations. ``Dispatcher.locate`` alone (the indexed
point-in-polygon lookup for every layer) is timed too, to compare lookup with lookup.
Medians of ``--repeat`` runs after one warm-up run, the garbage collector paused
while timing as ``timeit`` does; throughput in points per second.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from shapely.geometry import Point

from bench.grid_city import bounds, write_grid_city
from dispatch import Dispatcher, load_city_pack
from dispatch.demo_city import CATEGORIES
from dispatch.lint import lint_city_pack


def timed(function: Any, repeat: int, pause_gc: bool = True) -> tuple[float, list[float], Any]:
    """Median wall time of ``repeat`` runs after a warm-up (lazy indexes, caches).

    As ``timeit`` does, the cyclic garbage collector is paused while a run is timed
    (and run in between): otherwise a full collection of everything the process
    holds lands in some runs and not others, and the spread hides the code's cost.
    """
    function()
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        if pause_gc:
            gc.disable()
        try:
            started = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return statistics.median(times), times, result


def naive_tables(pack: Any) -> tuple[list[tuple[str, Any, Any]], dict[tuple[str, str], str]]:
    """Blocks as (id, polygon in lon/lat, polygon in metres) in file order, and (group, block) -> owning team."""
    layer = pack.layers["blocks"]
    fresh = [shapely.from_wkb(shapely.to_wkb(g)) for g in layer.geometries]  # unprepared copies: naive
    metric = pack.projection.geometries(np.array(fresh, dtype=object))
    blocks = list(zip(layer.feature_ids, fresh, metric, strict=True))
    owner: dict[tuple[str, str], str] = {}
    for unit in pack.spec.units:
        if unit.area is None or unit.area.layer != "blocks":
            continue
        for group in unit.groups:
            for block in unit.area.features:
                owner.setdefault((group, block), unit.id)
    return blocks, owner


def naive_locate(blocks: list[tuple[str, Any, Any]], owner: dict[tuple[str, str], str], rows: Any) -> list[str]:
    """Lower bound: the first block that contains the point, then its team; no band, no rules."""
    result = []
    for group, lat, lon in rows:
        point = Point(lon, lat)
        found = next((block for block, polygon, _ in blocks if polygon.contains(point)), None)
        result.append(owner.get((group, found), "ops") if found else "ops")
    return result


def naive_decide(
    blocks: list[tuple[str, Any, Any]], owner: dict[tuple[str, str], str], rows: Any, plane: Any, band: float
) -> list[tuple[str, tuple[str, ...]]]:
    """The same decision as the dispatcher's service-area step: the owning team, and the teams of other
    blocks within the band (in metres) that do not own the point's block; every polygon is visited."""
    result = []
    for group, lat, lon in rows:
        point = Point(lon, lat)
        x, y = plane.xy(np.array([lon]), np.array([lat]))
        point_m = Point(float(x[0]), float(y[0]))
        here = None
        near: dict[str, float] = {}
        for block, polygon, polygon_m in blocks:
            if here is None and polygon.contains(point):
                here = block
                continue
            distance = polygon_m.distance(point_m)
            if distance <= band:
                near[block] = distance
        unit = owner.get((group, here), "ops") if here else "ops"
        teams = {owner[(group, b)]: d for b, d in near.items() if (group, b) in owner and b != here}
        notify = tuple(t for t, _ in sorted(teams.items(), key=lambda item: item[1]) if t != unit)
        result.append((unit, notify))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--rows", type=int, default=42)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--naive-points", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        pack = load_city_pack(write_grid_city(Path(tmp) / "grid", args.cols, args.rows))
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        lint = lint_city_pack(pack)
        lint_s = time.perf_counter() - started
    polygons = sum(len(layer.feature_ids) for layer in pack.layers.values())
    dispatcher = Dispatcher(pack)

    rng = np.random.default_rng(42)
    min_lon, min_lat, max_lon, max_lat = bounds(args.cols, args.rows)
    margin_lon, margin_lat = (max_lon - min_lon) * 0.01, (max_lat - min_lat) * 0.01
    lats = rng.uniform(min_lat - margin_lat, max_lat + margin_lat, args.points)
    lons = rng.uniform(min_lon - margin_lon, max_lon + margin_lon, args.points)
    codes = [c["code"] for c in CATEGORIES]
    group_of = {c["code"]: c["group"] for c in CATEGORIES}
    categories = [codes[i] for i in rng.integers(0, len(codes), args.points)]
    sources = ["sensor" if x < 0.1 else "app" for x in rng.random(args.points)]
    confidences = rng.uniform(0.5, 1.0, args.points).tolist()
    midday = datetime(2026, 11, 26, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    night = datetime(2026, 11, 26, 23, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    units = [u.id for u in pack.spec.units]
    loads = {unit_id: int(n) for unit_id, n in zip(units, rng.integers(0, 60, len(units)), strict=True)}
    teams = [u for u in pack.spec.units if u.kind == "field_team"]
    positions = {u.id: (float(rng.uniform(min_lat, max_lat)), float(rng.uniform(min_lon, max_lon))) for u in teams}

    plain_s, plain_runs, plain = timed(
        lambda: dispatcher.assign_batch(categories, lats, lons, confidences, sources=sources, now=midday), args.repeat
    )
    loaded_s, loaded_runs, _ = timed(
        lambda: dispatcher.assign_batch(
            categories, lats, lons, confidences, sources=sources, now=night, loads=loads, positions=positions
        ),
        args.repeat,
    )
    explained_s, explained_runs, _ = timed(
        lambda: [
            a.explanation
            for a in dispatcher.assign_batch(categories, lats, lons, confidences, sources=sources, now=midday)
        ],
        args.repeat,
    )
    plain_gc_s, _, _ = timed(
        lambda: dispatcher.assign_batch(categories, lats, lons, confidences, sources=sources, now=midday),
        args.repeat,
        pause_gc=False,
    )
    explained_gc_s, _, _ = timed(
        lambda: [
            a.explanation
            for a in dispatcher.assign_batch(categories, lats, lons, confidences, sources=sources, now=midday)
        ],
        args.repeat,
        pause_gc=False,
    )
    locate_all_s, locate_all_runs, _ = timed(lambda: dispatcher.locate(lats, lons), args.repeat)
    blocks, owner = naive_tables(pack)
    n = min(args.naive_points, args.points)
    rows = list(zip([group_of[c] for c in categories[:n]], lats[:n], lons[:n], strict=True))
    naive_repeat = args.repeat
    locate_s, locate_runs, located = timed(lambda: naive_locate(blocks, owner, rows), naive_repeat)
    band = pack.spec.boundary_band_m
    decide_s, decide_runs, decided = timed(
        lambda: naive_decide(blocks, owner, rows, pack.projection, band), naive_repeat
    )
    compared = [i for i in range(n) if plain[i].rule in ("service-area", "fallback")]
    agree_locate = sum(located[i] == plain[i].unit_id for i in compared) / max(1, len(compared))
    band_only = [i for i in compared if categories[i] != "water_main_break"]  # that category has a co-notify rule
    agree_decide = sum(decided[i] == (plain[i].unit_id, plain[i].co_notify) for i in band_only) / max(1, len(band_only))

    rate = args.points / plain_s
    loaded_rate = args.points / loaded_s
    explained_rate = args.points / explained_s
    locate_rate = n / locate_s
    index_rate = args.points / locate_all_s
    decide_rate = n / decide_s
    results = {
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "pack": pack.name,
        "polygons": polygons,
        "blocks": len(pack.layers["blocks"].feature_ids),
        "units": len(pack.spec.units),
        "rules": len(pack.spec.rules),
        "load_s": round(load_s, 3),
        "lint_s": round(lint_s, 3),
        "lint_errors": len(lint.errors),
        "points": args.points,
        "repeat": args.repeat,
        "dispatcher_per_s": round(rate),
        "dispatcher_runs_s": [round(t, 4) for t in plain_runs],
        "dispatcher_explained_per_s": round(explained_rate),
        "dispatcher_explained_runs_s": [round(t, 4) for t in explained_runs],
        "dispatcher_with_loads_per_s": round(loaded_rate),
        "dispatcher_with_loads_runs_s": [round(t, 4) for t in loaded_runs],
        "co_notified_share": round(sum(bool(a.co_notify) for a in plain) / args.points, 4),
        "dispatcher_gc_on_per_s": round(args.points / plain_gc_s),
        "dispatcher_explained_gc_on_per_s": round(args.points / explained_gc_s),
        "dispatcher_locate_per_s": round(index_rate),
        "dispatcher_locate_runs_s": [round(t, 4) for t in locate_all_runs],
        "naive_points": n,
        "naive_decide_per_s": round(decide_rate, 1),
        "naive_decide_runs_s": [round(t, 4) for t in decide_runs],
        "naive_decide_agreement": round(agree_decide, 4),
        "naive_locate_per_s": round(locate_rate, 1),
        "naive_locate_runs_s": [round(t, 4) for t in locate_runs],
        "naive_locate_agreement": round(agree_locate, 4),
        "speedup_same_decision": round(rate / decide_rate, 1),
        "speedup_explained_same_decision": round(explained_rate / decide_rate, 1),
        "speedup_over_locate_only": round(rate / locate_rate, 1),
        "speedup_locate_vs_locate": round(index_rate / locate_rate, 1),
    }
    print(
        f"{pack.name}: {polygons} polygons ({results['blocks']} blocks), "
        f"{len(units)} units, {len(pack.spec.rules)} rules"
    )
    print(f"load {load_s:.2f} s, lint {lint_s:.2f} s ({len(lint.errors)} errors); medians of {args.repeat} runs")
    rows_out = [
        ("Dispatcher.assign_batch (rules, band; explanations deferred)", args.points, plain_s, rate),
        ("  + every explanation read", args.points, explained_s, explained_rate),
        ("  + loads and positions (capacity, nearest team)", args.points, loaded_s, loaded_rate),
        ("Dispatcher.assign_batch, garbage collector running", args.points, plain_gc_s, args.points / plain_gc_s),
        (
            "  + every explanation read, garbage collector running",
            args.points,
            explained_gc_s,
            args.points / explained_gc_s,
        ),
        ("Dispatcher.locate (STRtree: feature per layer, no decision)", args.points, locate_all_s, index_rate),
        ("naive, same decision: every polygon (contains, band)", n, decide_s, decide_rate),
        ("naive, locate only: polygons until one contains", n, locate_s, locate_rate),
    ]
    print(f"{'method':<62} {'points':>7} {'median s':>9} {'per second':>11}")
    for name, count, seconds, per_s in rows_out:
        print(f"{name:<62} {count:>7} {seconds:>9.3f} {per_s:>11,.0f}")
    print(
        f"speed-up, same decision: {rate / decide_rate:,.0f}x ({explained_rate / decide_rate:,.0f}x with "
        f"explanations read; agreement {agree_decide:.1%}); lookup alone, Dispatcher.locate vs the locate-only "
        f"loop: {index_rate / locate_rate:,.0f}x; full decision vs the locate-only loop (a lower bound): "
        f"{rate / locate_rate:,.0f}x (agreement {agree_locate:.1%})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
