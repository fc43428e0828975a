"""``cityloop city backtest``: a city's history replayed through its pack, without a broker, before go-live.

Every request of the exports goes through what production would run on it: the dispatcher (``assign_batch``), the
SLA clocks (``feedback.sla.deadline_for`` on the pack's calendar) and the merge index (the same Lua scripts, on a
throwaway embedded Redis). What the city recorded is the yardstick: the agency that handled each request, its
district, the due date its system computed and when it was closed. Nothing is left out silently: a request that
could not be replayed is counted under why.

The result is a plain dict (written as JSON) plus the per-row arrays the report's plots need
(streams/backtestreport.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dispatch import CityPack, Dispatcher
from dispatch.history import Rows, match_districts
from dispatch.onboard import slug
from dispatch.onboardchecks import placeholder_points
from feedback.sla import deadline_for
from streams.citypolicy import calendar_of
from streams.routebatch import category_codes
from streams.slalearn import TOLERANCE, parse_local

CHUNK = 20_000


@dataclass(frozen=True)
class Columns:
    category: str
    agency: str | None = None
    created: str = "created date"
    due: str | None = None
    closed: str | None = None
    district: str | None = None
    district_layer: str | None = None


@dataclass
class Backtest:
    """The figures (``summary``, JSON-able) and what the plots draw."""

    summary: dict[str, Any]
    lats: np.ndarray
    lons: np.ndarray
    agrees: np.ndarray  # per row: 1 routed to the recorded agency, 0 not, -1 not compared
    workload: dict[str, np.ndarray] = field(default_factory=dict)  # unit -> 7 x 24 counts (Mon..Sun x hour)
    due_offsets_h: np.ndarray = field(default_factory=lambda: np.zeros(0))  # CityLoop's due minus the city's, hours


def _agency_key(pack: CityPack, unit_id: str) -> str:
    unit = pack.unit(unit_id)
    return (unit.department or unit.id) if unit is not None else unit_id


def run_backtest(
    pack: CityPack, rows: Rows, columns: Columns, progress: Callable[[str], None] | None = None
) -> Backtest:
    say = progress or (lambda _: None)
    n = len(rows.rows)
    codes = category_codes(pack)
    given = rows.column(columns.category)
    code_of = [codes.get(" ".join(v.split()).casefold()) for v in given]
    lats, lons = rows.coordinates()
    in_range = np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
    known = np.array([c is not None for c in code_of], dtype=bool)
    routable = np.flatnonzero(known & in_range)
    skipped = Counter({"unknown category": int((~known).sum()), "no coordinates": int((known & ~in_range).sum())})
    say(f"routing {len(routable):,} of {n:,} requests")
    started = time.monotonic()
    units = np.full(n, "", dtype=object)
    dispatcher = Dispatcher(pack)
    for start in range(0, len(routable), CHUNK):
        part = routable[start : start + CHUNK]
        decided = dispatcher.assign_batch([code_of[i] for i in part], lats[part], lons[part])
        units[part] = [a.unit_id for a in decided]
    routing_s = time.monotonic() - started
    summary: dict[str, Any] = {
        "pack": {"name": pack.name, "version": pack.version, "units": len(pack.spec.units)},
        "requests": n,
        "files": list(rows.files),
        "replayed": len(routable),
        "not_replayed": {k: v for k, v in skipped.items() if v},
        "routing": {"seconds": round(routing_s, 3), "rows_per_s": round(len(routable) / max(routing_s, 1e-9))},
        "fallback_share": _share(sum(units[i] == pack.spec.fallback_unit for i in routable), len(routable)),
        "units_used": len(set(units[routable].tolist())),
    }
    agrees = np.full(n, -1, dtype=np.int8)
    if columns.agency:
        summary["agency"] = _agency_agreement(pack, rows.column(columns.agency), units, routable, agrees)
    if columns.district and columns.district_layer:
        summary["district"] = _district_agreement(pack, rows, columns)
    zone = pack.zone
    created = [parse_local(v, zone) for v in rows.column(columns.created)] if rows.has(columns.created) else [None] * n
    result = Backtest(summary, lats, lons, agrees)
    workload = _workload(units, routable, created, zone)
    summary["workload"] = {u: int(m.sum()) for u, m in sorted(workload.items(), key=lambda kv: -kv[1].sum())}
    result.workload = {u: workload[u] for u in list(summary["workload"])[:8]}  # the plot shows the busiest 8
    summary["without_creation_time"] = sum(created[i] is None for i in routable.tolist())
    if columns.due:
        say("checking SLA due dates")
        closed = rows.column(columns.closed) if columns.closed else [""] * n
        summary["sla"], result.due_offsets_h = _sla(pack, code_of, created, rows.column(columns.due), closed)
    say("merging repeats (the production merge index, on an embedded Redis)")
    summary["merges"] = _merges(pack, code_of, created, lats, lons, routable)
    return result


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def _agency_agreement(
    pack: CityPack, recorded: list[str], units: np.ndarray, routable: np.ndarray, agrees: np.ndarray
) -> dict[str, Any]:
    keys = {_agency_key(pack, u.id) for u in pack.spec.units}
    per_agency: dict[str, Counter[str]] = {}
    compared = hits = 0
    for i in routable.tolist():
        agency = recorded[i].strip()
        if not agency:
            continue
        key = slug(agency)
        if key not in keys:  # an agency the pack has no unit for: not comparable, counted apart
            per_agency.setdefault(agency, Counter())["no unit"] += 1
            continue
        ok = _agency_key(pack, units[i]) == key
        agrees[i] = int(ok)
        compared += 1
        hits += ok
        per_agency.setdefault(agency, Counter())["agree" if ok else "disagree"] += 1
    worst = sorted(per_agency.items(), key=lambda kv: -kv[1]["disagree"])[:10]
    return {
        "compared": compared,
        "agreement": _share(hits, compared),
        "no_unit_for_agency": sum(c["no unit"] for c in per_agency.values()),
        "most_disagreeing": [{"agency": a, **dict(c)} for a, c in worst if c["disagree"]],
    }


def _district_agreement(pack: CityPack, rows: Rows, columns: Columns) -> dict[str, Any]:
    layer = pack.layers[columns.district_layer]  # type: ignore[index]
    placeholders = placeholder_points(*rows.coordinates())  # a geocoder's default point votes for no district
    match = match_districts(rows, columns.district, layer, exclude=placeholders.rows)  # type: ignore[arg-type]
    return {
        "layer": layer.id,
        "values_mapped": len(match.to_feature),
        "compared": match.votes,
        "agreement": _share(match.agreeing, match.votes),
        "unmatched": dict(list(match.unmatched.items())[:10]),
    }


def _workload(units: np.ndarray, routable: np.ndarray, created: list[datetime | None], zone: Any) -> dict:
    per: dict[str, np.ndarray] = {}
    for i in routable.tolist():
        moment = created[i]
        if moment is None:
            continue
        local = moment.astimezone(zone)
        per.setdefault(units[i], np.zeros((7, 24), dtype=np.int64))[local.weekday(), local.hour] += 1
    return per


def _sla(
    pack: CityPack, code_of: list[str | None], created: list[datetime | None], due: list[str], closed: list[str]
) -> tuple[dict[str, Any], np.ndarray]:
    calendar, zone = calendar_of(pack), pack.zone
    offsets: list[float] = []
    verdicts = Counter[str]()
    compared = within = no_target = 0
    for code, opened, due_text, closed_text in zip(code_of, created, due, closed, strict=True):
        recorded = parse_local(due_text, zone)
        if code is None or opened is None or recorded is None or recorded <= opened:
            continue
        target = pack.category(code).sla  # type: ignore[union-attr]
        if target is None:
            no_target += 1
            continue
        ours = deadline_for(opened, target.resolve, target.clock, calendar)
        compared += 1
        within += abs(ours - recorded) < TOLERANCE
        offsets.append((ours - recorded).total_seconds() / 3600)
        finished = parse_local(closed_text, zone)
        if finished is not None and finished >= opened:
            verdicts["agree" if (finished <= ours) == (finished <= recorded) else "disagree"] += 1
    judged = verdicts["agree"] + verdicts["disagree"]
    return {
        "compared": compared,
        "due_within_1h": _share(within, compared),
        "categories_without_target": no_target,
        "on_time_verdicts_compared": judged,
        "on_time_agreement": _share(verdicts["agree"], judged),
    }, np.asarray(offsets)


def _merges(
    pack: CityPack,
    code_of: list[str | None],
    created: list[datetime | None],
    lats: np.ndarray,
    lons: np.ndarray,
    routable: np.ndarray,
) -> dict[str, Any]:
    order = sorted((created[i], i) for i in routable.tolist() if created[i] is not None)
    if not order:
        return {"replayed": 0}
    return asyncio.run(_merge_all(pack, code_of, order, lats, lons))


async def _merge_all(pack: CityPack, code_of: list, order: list, lats: np.ndarray, lons: np.ndarray) -> dict:
    import redis.asyncio as aioredis

    from classifiers.merge import MergePolicy
    from classifiers.store import RedisIncidentIndex, Sighting
    from streams.ids import report_incident, report_source

    policy = MergePolicy()
    merged = opened = 0
    with _throwaway_redis() as socket_path:
        client = aioredis.Redis(unix_socket_path=socket_path)
        try:
            index = RedisIncidentIndex(client, "backtest", ttl_s=400 * 86400)
            for start in range(0, len(order), 2000):
                batch = []
                for moment, i in order[start : start + 2000]:
                    rule = policy.rule_for(code_of[i])
                    batch.append(Sighting(source_id=report_source(f"r{i}"), new_incident_id=report_incident(f"r{i}"),
                                          category=code_of[i], family=rule.family, lat=float(lats[i]),
                                          lon=float(lons[i]), event_ts=moment.timestamp(), radius_m=rule.radius_m,
                                          window_s=rule.window_s, tokens=()))  # fmt: skip
                decisions = await index.merge_or_open(batch, text_weight=policy.text_weight)
                opened += sum(d.opened for d in decisions)
                merged += sum(not d.opened for d in decisions)
        finally:
            await client.aclose()
    return {
        "replayed": opened + merged,
        "incidents": opened,
        "merged": merged,
        "merged_share": _share(merged, opened + merged),
        "rule": f"{policy.default_radius_m:g} m within {policy.default_window_s / 3600:g} h, same category",
    }


@contextlib.contextmanager
def _throwaway_redis() -> Iterator[str]:
    """A redis-server on a unix socket in a temporary directory, no persistence; gone at exit."""
    from streams.redisconn import embedded_redis_binary

    with tempfile.TemporaryDirectory(prefix="cityloop-backtest-") as tmp:
        socket_path = str(Path(tmp) / "redis.sock")
        process = subprocess.Popen(
            [
                embedded_redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                socket_path,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not Path(socket_path).exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the embedded redis-server for the merge replay did not start")
                time.sleep(0.02)
            yield socket_path
        finally:
            process.terminate()
            process.wait(timeout=10)
