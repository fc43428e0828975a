"""Helpers for closed-loop tests: a city pack with short SLAs, events as units send them, orders as Redis keeps them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import yaml
from kafka import KafkaProducer

from dispatch.demo_city import write_demo_city
from streams.ids import stable_id

# A point in Lindenhaven's south-west district (roads-west, cleansing-south, water-west).
LAT, LON = 51.99, 5.06


def iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def short_sla_city(root: Path, slas: dict[str, tuple[str, str, str]]) -> Path:
    """The demo city with the given categories' SLAs (acknowledge, resolve, verify) on a calendar clock."""
    pack = write_demo_city(root)
    document = yaml.safe_load((pack / "city.yaml").read_text())
    for category in document["categories"]:
        if category["code"] in slas:
            ack, resolve, verify = slas[category["code"]]
            category["sla"] = {"acknowledge": ack, "resolve": resolve, "verify": verify, "clock": "calendar"}
    (pack / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return pack


def send(producer: KafkaProducer, topic: str, key: str, record: dict[str, Any]) -> None:
    # .get(): a write the broker refused fails the test here, not as a missing order half a minute later
    producer.send(topic, key=key.encode(), value=json.dumps(record).encode()).get(timeout=30)


def report(producer: KafkaProducer, topics: Any, report_id: str, category: str, lat: float = LAT, lon: float = LON,
           text: str = "please fix this") -> str:  # fmt: skip
    """Write a report with a service code; returns the incident id it opens."""
    record = {"report_id": report_id, "source": "app", "text": text, "service_code": category, "lat": lat,
              "lon": lon, "reported_at": iso()}  # fmt: skip
    send(producer, topics.reports, report_id, record)
    return stable_id("inc", "report", report_id)


def lifecycle_event(kind: str, incident_id: str, actor: str, task_id: str | None = None, **fields: Any) -> dict:
    """An event as the API writes it for a unit (``unit:<id>``) or a person at the ops centre (``ops:<name>``)."""
    record = {"schema": 1, "event_id": f"evt-test-{uuid.uuid4().hex[:16]}", "type": kind, "incident_id": incident_id,
              "task_id": task_id, "unit_id": actor.split(":", 1)[1] if actor.startswith("unit:") else None,
              "actor": actor, "at": fields.pop("at", None) or iso()}  # fmt: skip
    record.update(fields)
    return record


def order(client: redis.Redis, namespace: str, incident_id: str) -> dict[str, Any] | None:
    raw = client.hget(f"{namespace}:order:{incident_id}", "o")
    return None if raw is None else json.loads(raw)


def wait_order(client: redis.Redis, namespace: str, incident_id: str, check: Any, timeout: float = 30.0) -> dict:
    """Poll the order until ``check(order)`` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = order(client, namespace, incident_id)
        if last is not None and check(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"order {incident_id} never matched; last seen: {json.dumps(last, indent=1)[:3000]}")


def events_of(records: list, incident_id: str | None = None) -> list[dict]:
    values = [json.loads(m.value) for m in records]
    return [v for v in values if incident_id is None or v.get("incident_id") == incident_id]
