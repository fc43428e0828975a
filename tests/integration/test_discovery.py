"""Discovery through a real worker: alarms and reports merge; unsure reports wait for a person."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.ids import stable_id
from tests.integration.conftest import collect

pytestmark = pytest.mark.integration

SENSOR_LAT, SENSOR_LON = 51.99, 5.07


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def latest(records: list) -> dict[str, dict]:
    """The last record per incident id (the incidents topic is a changelog)."""
    result: dict[str, dict] = {}
    for message in records:
        record = json.loads(message.value)
        result[record["incident_id"]] = record
    return result


def test_a_flood_alarm_and_residents_reports_become_one_incident_with_one_task(workers, producer, topics, bootstrap):
    """The water-level alarm opens the incident; three residents 30-90 m away join it; one task in all."""
    workers.start()
    now = datetime.now(UTC)
    for minute, level in enumerate([10, 12, 41, 44, 43]):
        reading = {"sensor_id": "wl-9", "kind": "water_level", "value": level, "unit": "cm", "lat": SENSOR_LAT,
                   "lon": SENSOR_LON, "observed_at": iso(now - timedelta(minutes=10 - minute))}  # fmt: skip
        producer.send(topics.readings, key=b"wl-9", value=json.dumps(reading).encode())
    producer.flush()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 1, timeout=60)
    texts = ["street flooded, water over the kerb", "the road is under water", "big flood at the crossing"]
    for i, text in enumerate(texts):
        report = {"report_id": f"flood-{i}", "source": "app", "text": text, "service_code": "flooding",
                  "lat": SENSOR_LAT + 0.0003 * (i + 1), "lon": SENSOR_LON, "reported_at": iso(now)}  # fmt: skip
        producer.send(topics.reports, key=report["report_id"].encode(), value=json.dumps(report).encode())
    producer.flush()

    def three_merged(records: list) -> bool:
        return sum(json.loads(m.value)["type"] == "merged" for m in records) >= 3

    feedback = collect(bootstrap, topics.feedback, three_merged, timeout=60)
    incidents = latest(collect(bootstrap, topics.incidents, lambda rs: False, timeout=1))
    tasks = collect(bootstrap, topics.tasks, lambda rs: False, timeout=1)
    assert len(incidents) == 1
    (incident,) = incidents.values()
    assert incident["origin"] == "sensor" and incident["category"] == "flooding"
    sensors = [s for s in incident["source_ids"] if s.startswith("sensor:wl-9:")]
    assert len(sensors) == 1
    assert set(incident["source_ids"]) == {f"report:flood-{i}" for i in range(3)} | set(sensors)
    assert len(tasks) == 1 and json.loads(tasks[0].value)["incident_id"] == incident["incident_id"]
    merged = [json.loads(m.value) for m in feedback if json.loads(m.value)["type"] == "merged"]
    assert all(0 < e["distance_m"] <= 150 for e in merged)


def test_a_report_in_the_boundary_band_is_assigned_and_the_neighbour_is_told(workers, producer, topics, bootstrap):
    """A pothole within 25 m of the line between two roads crews: one owns the task, the other is co-notified."""
    workers.start()
    report = {"report_id": "edge-1", "source": "app", "text": "pothole", "service_code": "pothole",
              "lat": 52.01888944723618, "lon": 5.11, "reported_at": iso(datetime.now(UTC))}  # fmt: skip
    producer.send(topics.reports, key=b"edge-1", value=json.dumps(report).encode())
    producer.flush()
    (message,) = collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 1, timeout=60)
    task = json.loads(message.value)
    assert task["unit_id"] == "roads-east" and task["co_notify"] == ["roads-west"]

    def told(records: list) -> bool:
        return any(json.loads(m.value)["type"] == "co_notified" for m in records)

    notices = [json.loads(m.value) for m in collect(bootstrap, topics.feedback, told, timeout=30)]
    (notice,) = [n for n in notices if n["type"] == "co_notified"]
    assert notice["unit_id"] == "roads-west" and notice["owner"] == "roads-east"


def test_an_unsure_report_waits_for_a_person_whose_decision_dispatches_it(
    workers, producer, topics, bootstrap, redis_url
):
    """Below the threshold: an incident in triage and no task; a triage_decision event dispatches it.

    A decision for an unknown incident or category is dead-lettered with the reason.
    """
    workers.start(CITYLOOP_TRIAGE_THRESHOLD="0.99")
    now = iso(datetime.now(UTC))
    report = {"report_id": "odd-1", "source": "phone", "text": "something strange is going on by the canal",
              "lat": 51.99, "lon": 5.06, "reported_at": now}  # fmt: skip
    producer.send(topics.reports, key=b"odd-1", value=json.dumps(report).encode())
    producer.flush()
    incident_id = stable_id("inc", "report", "odd-1")

    def queued(records: list) -> bool:
        return any(json.loads(m.value)["type"] == "triage_needed" for m in records)

    collect(bootstrap, topics.feedback, queued, timeout=60)
    incidents = latest(collect(bootstrap, topics.incidents, lambda rs: False, timeout=1))
    assert incidents[incident_id]["status"] == "triage"
    assert collect(bootstrap, topics.tasks, lambda rs: False, timeout=1) == []

    env = {
        "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CITYLOOP_REDIS_URL": redis_url,
        "CITYLOOP_TOPIC_PREFIX": topics.prefix,
    }
    listed = CliRunner().invoke(main, ["triage", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    (waiting,) = [json.loads(line) for line in listed.output.splitlines()]
    assert waiting["incident_id"] == incident_id and waiting["text"] == report["text"]
    decide = ["triage", "decide", incident_id, "--category", "illegal_dumping", "--by", "ana"]
    decided = CliRunner().invoke(main, decide, env=env)
    assert decided.exit_code == 0, decided.output
    decisions = [
        {"type": "triage_decision", "incident_id": "inc-nope", "category": "litter", "decided_by": "ana"},
        {"type": "triage_decision", "incident_id": incident_id, "category": "dragons", "decided_by": "ana"},
    ]
    for decision in decisions:
        producer.send(topics.feedback, key=incident_id.encode(), value=json.dumps(decision).encode())
    producer.flush()
    tasks = collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 1, timeout=60)
    task = json.loads(tasks[0].value)
    assert task["incident_id"] == incident_id and task["category"] == "illegal_dumping"
    assert task["unit_id"] == "cleansing-south"
    dead = collect(bootstrap, topics.deadletter, lambda rs: len(rs) >= 2, timeout=30)
    reasons = sorted(json.loads(m.value)["reason_code"] for m in dead)
    assert reasons == ["not_in_triage", "unknown_category"]
    feedback = [json.loads(m.value) for m in collect(bootstrap, topics.feedback, lambda rs: False, timeout=1)]
    labelled = [e for e in feedback if e["type"] == "triaged"]
    assert len(labelled) == 1 and labelled[0]["text"] == report["text"] and labelled[0]["category"] == "illegal_dumping"


def test_a_worker_classifies_with_the_citys_own_model_file(workers, producer, topics, bootstrap, tmp_path):
    """`cityloop train` output given as CITYLOOP_MODEL replaces the seed model in the worker."""
    import csv

    rows = [("zorblax all over the wall", "graffiti"), ("a zorblax tag again", "graffiti"),
            ("fresh zorblax paint on the shop", "graffiti"), ("quizzle in the road", "pothole"),
            ("deep quizzle near the school", "pothole"), ("the quizzle got bigger", "pothole")] * 6  # fmt: skip
    data = tmp_path / "history.csv"
    with open(data, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["description", "category"])
        writer.writerows(rows)
    model = tmp_path / "city.cityloop"
    trained = CliRunner().invoke(main, ["train", "--data", str(data), "--text-col", "description", "--label-col",
                                        "category", "--out", str(model), "--holdout", "0.34"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    workers.start(CITYLOOP_MODEL=str(model), CITYLOOP_TRIAGE_THRESHOLD="0")
    report = {"report_id": "zb-1", "source": "app", "text": "someone sprayed zorblax on my door", "lat": 51.99,
              "lon": 5.06, "reported_at": iso(datetime.now(UTC))}  # fmt: skip
    producer.send(topics.reports, key=b"zb-1", value=json.dumps(report).encode())
    producer.flush()
    incidents = latest(collect(bootstrap, topics.incidents, lambda rs: len(rs) >= 1, timeout=60))
    (incident,) = incidents.values()
    assert incident["classified_by"] == "text_model" and incident["category"] == "graffiti"
    assert [c for c, _ in incident["top"]] == ["graffiti", "pothole"]


def test_a_unit_at_capacity_overflows_to_its_backup(workers, producer, topics, bootstrap, tmp_path):
    """Roads West holds one open task at most: the second pothole in its area goes to Roads East, its backup."""
    import yaml

    from dispatch.demo_city import write_demo_city

    city = write_demo_city(tmp_path / "city")
    document = yaml.safe_load((city / "city.yaml").read_text())
    for unit in document["units"]:
        if unit["id"] == "roads-west":
            unit["capacity"] = 1
    (city / "city.yaml").write_text(yaml.safe_dump(document))
    workers.start(CITYLOOP_CITY=str(city))
    now = iso(datetime.now(UTC))
    for i, (lat, lon) in enumerate([(51.99, 5.06), (51.99, 5.095)]):  # two problems in the west, 2.4 km apart
        report = {"report_id": f"cap-{i}", "source": "app", "text": "pothole", "service_code": "pothole",
                  "lat": lat, "lon": lon, "reported_at": now}  # fmt: skip
        producer.send(topics.reports, key=report["report_id"].encode(), value=json.dumps(report).encode())
        producer.flush()
        collect(bootstrap, topics.tasks, lambda rs, n=i + 1: len(rs) >= n, timeout=60)
    tasks = [json.loads(m.value) for m in collect(bootstrap, topics.tasks, lambda rs: False, timeout=1)]
    units = {t["incident_id"]: t["unit_id"] for t in tasks}
    assert units[stable_id("inc", "report", "cap-0")] == "roads-west"
    assert units[stable_id("inc", "report", "cap-1")] == "roads-east"
    second = next(t for t in tasks if t["incident_id"] == stable_id("inc", "report", "cap-1"))
    assert "capacity" in json.dumps(second["reason"]["explanation"])
