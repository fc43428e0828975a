"""End to end on the real broker and Redis, written to by an outside client (kafka-python)."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from classifiers import seed_classifier
from dispatch.demo_city import CATEGORIES, bounds, write_demo_city
from streams.ids import stable_id
from tests.integration.cityfacts import NaiveCity
from tests.integration.conftest import collect

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

TEXTS = [
    "huge pothole in the road near the bakery",
    "street light not working all night",
    "overflowing rubbish bins on the corner",
    "the street is flooded after the storm",
    "tree fell across the cycle path",
    "car parked on the pavement blocking the pram",
]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


GRID_LAT, GRID_LON = 0.004, 0.006  # ~445 m x ~410 m: no two reports within the 150 m merge radius


def grid_points(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """Distinct problems: points on a grid over the city and a margin around it (those go to the fallback)."""
    min_lon, min_lat, max_lon, max_lat = bounds()
    margin = 0.02
    points = [
        (min_lat - margin + r * GRID_LAT, min_lon - margin + c * GRID_LON)
        for r in range(int((max_lat - min_lat + 2 * margin) / GRID_LAT) + 1)
        for c in range(int((max_lon - min_lon + 2 * margin) / GRID_LON) + 1)
    ]
    assert len(points) >= count
    return rng.sample(points, count)


def make_valid_reports(rng: random.Random, now: datetime, count: int) -> list[dict]:
    reports = []
    for i, (lat, lon) in enumerate(grid_points(rng, count)):
        report = {
            "report_id": f"rep-{i}",
            "source": rng.choice(["app", "phone", "web", "open311"]),
            "text": rng.choice(TEXTS),
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "reported_at": iso(now - timedelta(minutes=rng.randint(0, 600))),
        }
        if rng.random() < 0.7:
            report["service_code"] = rng.choice(CATEGORIES)["code"]
        reports.append(report)
    return reports


def make_readings(rng: random.Random, now: datetime) -> tuple[list[dict], dict[str, tuple[float, float, str]]]:
    """30 sensors x 10 readings; sensors 0-9 cross their threshold once (one alarm each)."""
    kinds = {"water_level": (5.0, 45.0), "noise_level": (55.0, 95.0), "pm25": (10.0, 110.0)}
    readings, alarms = [], {}
    # sensors sit in the middle of grid cells, ~300 m from any report: alarms and reports do not merge here
    cells = grid_points(rng, 30)
    for s in range(30):
        kind = list(kinds)[s % 3]
        normal, high = kinds[kind]
        lat, lon = cells[s][0] + GRID_LAT / 2, cells[s][1] + GRID_LON / 2
        for t in range(10):
            value = high if (s < 10 and 4 <= t <= 6) else normal
            readings.append(
                {
                    "sensor_id": f"s-{s}",
                    "kind": kind,
                    "value": value,
                    "lat": lat,
                    "lon": lon,
                    "observed_at": iso(now - timedelta(minutes=10 - t)),
                }
            )
        if s < 10:
            alarms[f"s-{s}"] = (lat, lon, kind)
    return readings, alarms


def make_invalid(now: datetime) -> list[tuple[str, bytes, str]]:
    """200 invalid records in varied ways: (stream, bytes, expected reason code)."""
    good_report = {
        "report_id": "x",
        "source": "app",
        "text": "pothole",
        "lat": 52.0,
        "lon": 5.1,
        "reported_at": iso(now),
    }
    good_reading = {"sensor_id": "x", "kind": "pm25", "value": 1.0, "lat": 52.0, "lon": 5.1, "observed_at": iso(now)}

    def variant(base: dict, i: int, **changes: object) -> bytes:
        record = {**base, ("report_id" if "report_id" in base else "sensor_id"): f"bad-{i}"}
        for key, value in changes.items():
            if value is ...:
                record.pop(key)
            else:
                record[key] = value
        return json.dumps(record).encode()

    makers = [
        ("reports", lambda i: f"not json {i}".encode(), "invalid_json"),
        ("reports", lambda i: b"\xff\xfe" + str(i).encode() + b"\xc3\x28", "bad_encoding"),
        ("reports", lambda i: variant(good_report, i, lat=91.0 + i % 5), "out_of_range"),
        ("reports", lambda i: variant(good_report, i, text=...), "missing_field"),
        ("reports", lambda i: variant(good_report, i, lon="5.1"), "wrong_type"),
        ("reports", lambda i: variant(good_report, i, reported_at=iso(now + timedelta(days=30))), "future_timestamp"),
        ("reports", lambda i: variant(good_report, i, text="x" * 4001), "too_long"),
        ("reports", lambda i: f'{{"report_id": "d{i}", "report_id": "e{i}"}}'.encode(), "duplicate_key"),
        ("reports", lambda i: variant(good_report, i).replace(b'"lat": 52.0', b'"lat": NaN'), "non_finite"),
        ("reports", lambda i: f"[{i}]".encode(), "not_object"),
        ("readings", lambda i: variant(good_reading, i, value=...), "missing_field"),
        ("readings", lambda i: variant(good_reading, i, value="high"), "wrong_type"),
        ("readings", lambda i: variant(good_reading, i, kind="radiation"), "unknown_kind"),
        ("readings", lambda i: variant(good_reading, i, observed_at="noon"), "bad_timestamp"),
        ("readings", lambda i: variant(good_reading, i, lon=-200.0), "out_of_range"),
        ("readings", lambda i: variant(good_reading, i, sensor_id="", note=i), "missing_field"),
        ("readings", lambda i: b"{" * 3000 + str(i).encode(), "invalid_json"),
        ("readings", lambda i: b"x" * (70 * 1024) + str(i).encode(), "too_large"),
        ("readings", lambda i: variant(good_reading, i, observed_at="2026-11-26T10:00:00"), "bad_timestamp"),
        ("readings", lambda i: b"null", "not_object"),
    ]
    result = []
    for i in range(200):
        stream, make, code = makers[i % len(makers)]
        raw = make(i)
        if raw == b"null":
            raw = b"null " + b" " * i  # still JSON null, but unique bytes
        result.append((stream, raw, code))
    return result


def original_bytes(record: dict) -> bytes:
    if record["original_encoding"] == "base64":
        return base64.b64decode(record["original"])
    return record["original"].encode("utf-8")


def test_outside_client_traffic_yields_one_task_per_report_and_one_dead_letter_per_bad_record(
    workers, producer, topics, bootstrap, tmp_path: Path
):
    """1,000 records (a fifth invalid) plus 20 redelivered reports, through one worker.

    Each valid report gets exactly one task, for the unit an independent naive
    point-in-polygon reading of the pack names; each sensor excursion one alarm
    task; each invalid record exactly one dead letter with the expected reason.
    """
    rng = random.Random(42)
    now = datetime.now(UTC)
    reports = make_valid_reports(rng, now, 500)
    readings, alarms = make_readings(rng, now)
    invalid = make_invalid(now)
    assert len(reports) + len(readings) + len(invalid) == 1000

    # every text classification is dispatched here; triage has its own test
    worker = workers.start(CITYLOOP_TRIAGE_THRESHOLD="0")
    records: list[tuple[str, bytes | None, bytes]] = []
    records += [(topics.reports, r["report_id"].encode(), json.dumps(r).encode()) for r in reports]
    valid_readings = [(topics.readings, r["sensor_id"].encode(), json.dumps(r).encode()) for r in readings]
    records += valid_readings
    records += [(getattr(topics, stream), None, raw) for stream, raw, _ in invalid]
    # shuffle everything, then put the valid readings back in time order in the slots they took:
    # the contract asks producers to key readings by sensor and keep each sensor's order
    rng.shuffle(records)
    in_order = iter(valid_readings)
    records = [next(in_order) if (r[0] == topics.readings and r[1] is not None) else r for r in records]
    for topic, key, value in records:
        producer.send(topic, key=key, value=value)
    for r in rng.sample(reports, 20):  # the same reports again, as a redelivering client would
        producer.send(topics.reports, key=r["report_id"].encode(), value=json.dumps(r).encode())
    producer.flush()

    expected_tasks = len(reports) + len(alarms)
    tasks = collect(bootstrap, topics.tasks, lambda rs: len(rs) >= expected_tasks, timeout=120)
    dead = collect(bootstrap, topics.deadletter, lambda rs: len(rs) >= len(invalid), timeout=60)
    # give stragglers (duplicates that should not exist) a moment to show up
    tasks = collect(bootstrap, topics.tasks, lambda rs: False, timeout=3)
    dead = collect(bootstrap, topics.deadletter, lambda rs: False, timeout=1)

    task_records = [json.loads(m.value) for m in tasks]
    by_incident: dict[str, list[dict]] = {}
    for task in task_records:
        by_incident.setdefault(task["incident_id"], []).append(task)

    naive = NaiveCity(write_demo_city(tmp_path / "facts"))
    text_only = [r for r in reports if "service_code" not in r]
    predicted = dict(
        zip([r["report_id"] for r in text_only], seed_classifier().predict([r["text"] for r in text_only]), strict=True)
    )
    wrong = []
    for r in reports:
        got = by_incident.get(stable_id("inc", "report", r["report_id"]), [])
        assert len(got) == 1, f"report {r['report_id']} has {len(got)} tasks"
        category = r.get("service_code") or predicted[r["report_id"]].category
        assert got[0]["category"] == category
        expected_unit = naive.owner(category, r["lat"], r["lon"])
        if got[0]["unit_id"] != expected_unit:
            wrong.append((r["report_id"], category, got[0]["unit_id"], expected_unit))
    assert not wrong, f"{len(wrong)} reports went to the wrong unit: {wrong[:5]}"

    report_incidents = {stable_id("inc", "report", r["report_id"]) for r in reports}
    sensor_tasks = [t for t in task_records if t["incident_id"] not in report_incidents]
    assert len(sensor_tasks) == len(alarms), "one alarm task per sensor excursion"
    kind_category = {"water_level": "flooding", "noise_level": "noise", "pm25": "air_quality"}
    expected_alarm_units = sorted(naive.owner(kind_category[k], lat, lon) for lat, lon, k in alarms.values())
    assert sorted(t["unit_id"] for t in sensor_tasks) == expected_alarm_units
    assert len(task_records) == expected_tasks, "no duplicates, nothing extra"

    dead_records = [json.loads(m.value) for m in dead]
    assert len(dead_records) == len(invalid)
    expected_codes = {raw: code for _, raw, code in invalid}
    seen = set()
    for record in dead_records:
        raw = original_bytes(record)
        assert raw in expected_codes, f"dead letter for a record we did not send bad: {record['reason']}"
        assert record["reason_code"] == expected_codes[raw], record
        assert record["reason"] and record["stage"] in ("validate", "detect")
        assert record["topic"] in (topics.reports, topics.readings)
        seen.add(raw)
    assert len(seen) == len(invalid), "each invalid record dead-lettered exactly once"

    metrics = worker.metrics()
    assert 'cityloop_deadletters_total{reason="unknown_kind",stage="detect"} 10.0' in metrics
    assert "cityloop_report_to_task_seconds_count 500.0" in metrics
