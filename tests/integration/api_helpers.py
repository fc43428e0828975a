"""Helpers for API tests: settings for a test namespace, the API in-process, unit tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.admin import ensure_topics
from streams.api import create_api
from streams.api.store import ApiStore
from streams.settings import Settings, load_settings
from streams.topics import Topics

OPEN311_KEY = "test-open311-key"


def api_settings(bootstrap: str, redis_url: str, namespace: str, city: Path, **extra: Any) -> Settings:
    return load_settings(kafka_bootstrap=bootstrap, redis_url=redis_url, topic_prefix=namespace, city=str(city),
                         open311_api_keys=OPEN311_KEY, api_max_body_bytes=4096, **extra)  # fmt: skip


@contextmanager
def api_client(settings: Settings, **kwargs: Any) -> Iterator[TestClient]:
    """The API in-process (TestClient runs its start-up: a Redis client and a Kafka producer)."""
    ensure_topics(settings.kafka_bootstrap, Topics(settings.topic_prefix).all(), settings.partitions)
    pack = load_city_pack(settings.city)
    app = create_api(settings, pack, **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def demo_pack(root: Path) -> Path:
    return write_demo_city(root)


def issue_token(redis_url: str, namespace: str, unit_id: str, holder: str | None = None) -> str:
    async def run() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            from datetime import UTC, datetime

            return await ApiStore(client, namespace).issue_token(unit_id, holder or unit_id, datetime.now(UTC))
        finally:
            await client.aclose()

    return asyncio.run(run())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_request(client: TestClient, **fields: Any) -> Any:
    form = {"api_key": OPEN311_KEY, "service_code": "pothole", "lat": "51.99", "long": "5.06",
            "description": "deep pothole outside the school"}  # fmt: skip
    form.update({k: v for k, v in fields.items() if v is not None})
    for name in [k for k, v in fields.items() if v is None]:
        form.pop(name, None)
    return client.post("/open311/v2/requests.json", data=form)


def send_unsure_report(bootstrap: str, namespace: str, report_id: str = "odd-1") -> dict[str, Any]:
    """A report with no service code and text no model is sure of, written to the reports topic as an app would."""
    import json
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    report = {"report_id": report_id, "source": "phone", "text": "something odd is going on by the canal",
              "lat": 51.99, "lon": 5.06, "reported_at": datetime.now(UTC).isoformat()}  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(f"{namespace}.reports", key=report_id.encode(), value=json.dumps(report).encode())
    producer.flush()
    producer.close()
    return report


def send_readings(bootstrap: str, namespace: str, *readings: tuple[str, str, float, float, float, float]) -> None:
    """Sensor readings (sensor id, kind, value, lat, lon, seconds ago) written to the readings topic, keyed by sensor,
    as a sensor gateway would."""
    import json
    from datetime import UTC, datetime, timedelta

    from kafka import KafkaProducer

    now = datetime.now(UTC)
    units = {"water_level": "cm", "noise_level": "dBA", "pm25": "ug/m3", "water_pressure": "bar"}
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for sensor_id, kind, value, lat, lon, ago in readings:
        record = {"sensor_id": sensor_id, "kind": kind, "value": value, "unit": units[kind], "lat": lat, "lon": lon,
                  "observed_at": (now - timedelta(seconds=ago)).isoformat()}  # fmt: skip
        producer.send(f"{namespace}.readings", key=sensor_id.encode(), value=json.dumps(record).encode())
    producer.flush()
    producer.close()
