"""In-memory parts for the engine, the lifecycle and the timer: a Redis in memory that runs the stores' real Lua
scripts (fakeredis with lupa), a text model that answers what a test tells it, a sink that keeps what it is sent,
and a clock the test moves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from classifiers import Classification
from classifiers.triage import TriagePolicy
from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city
from streams.outcomes import Envelope
from streams.pipeline.sensor import RecordingSensor
from streams.settings import load_settings
from streams.topics import Topics
from streams.wiring import WorkerParts, worker_parts

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, in working hours in the demo city
LAT, LON = 51.99, 5.06  # inside the demo city, roads-west's area


class Words:
    """A text model that answers by keyword: ``{"pothole": ("pothole", 0.97)}``; anything else is unsure litter."""

    def __init__(self, answers: dict[str, tuple[str, float]] | None = None) -> None:
        self.answers = answers or {}
        self.classes = sorted({category for category, _ in self.answers.values()} | {"litter"})

    def predict(self, texts: Sequence[str]) -> list[Classification]:
        out = []
        for text in texts:
            category, confidence = next(
                (answer for word, answer in self.answers.items() if word in text), ("litter", 0.1)
            )
            out.append(Classification(category, confidence, ((category, confidence),)))
        return out


class Sink:
    """Keeps every record sent, decoded; ``fail`` makes the next send raise (a broker gone away)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = False

    async def send_all(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        if self.fail:
            self.fail = False
            raise ConnectionError("broker gone")
        self.sent += [(topic, key.decode(), json.loads(value)) for topic, key, value in records]

    def on(self, topic: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Records sent to ``topic`` (ending with it), of event type ``kind`` if given."""
        return [r for t, _, r in self.sent if t.endswith(topic) and (kind is None or r.get("type") == kind)]


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> CityPack:
    return load_city_pack(write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city"))


class Loop:
    """One worker's parts on in-memory stores, and helpers to feed them."""

    def __init__(self, pack: CityPack, model: Words, threshold: float = 0.5) -> None:
        self.redis = fakeredis.FakeAsyncRedis()
        self.sink = Sink()
        self.clock = Clock()
        self.sensor = RecordingSensor()
        self.settings = load_settings(topic_prefix="t")
        self.topics = Topics("t")
        self.parts: WorkerParts = worker_parts(self.settings, pack, model, TriagePolicy(threshold), self.redis,
                                               self.sink, sensor=self.sensor, clock=self.clock)  # fmt: skip
        self.engine = self.parts.engine
        self.offset = 0

    def envelopes(self, topic: str, records: Sequence[Any]) -> list[Envelope]:
        out = []
        for record in records:
            value = record if isinstance(record, bytes) else json.dumps(record).encode()
            out.append(Envelope(value, b"k", topic, 0, self.offset, self.clock().timestamp()))
            self.offset += 1
        return out

    async def reports(self, *reports: dict[str, Any]) -> Any:
        return await self.engine.process_reports(self.envelopes(self.topics.reports, reports))

    async def readings(self, *readings: dict[str, Any]) -> Any:
        return await self.engine.process_readings(self.envelopes(self.topics.readings, readings))

    async def feedback(self, *events: dict[str, Any]) -> Any:
        """Feedback records through the engine (triage decisions) and then the lifecycle, as the worker does."""
        envelopes = self.envelopes(self.topics.feedback, events)
        decided = await self.engine.process_feedback(envelopes)
        applied = await self.parts.lifecycle.process(envelopes)
        return decided, applied

    async def loop_back(self, start: int = 0) -> int:
        """Feed the feedback records sent since ``start`` back in (the worker reads its own feedback topic)."""
        end = len(self.sink.sent)
        events = [r for t, _, r in self.sink.sent[start:end] if t == self.topics.feedback]
        if events:
            await self.feedback(*events)
        return end


def report(i: int | str, *, code: str | None = "pothole", text: str = "deep hole in the road", lat: float = LAT,
           lon: float = LON, at: datetime = NOW) -> dict[str, Any]:  # fmt: skip
    record = {"report_id": f"r-{i}", "source": "app", "text": text, "lat": lat, "lon": lon,
              "reported_at": at.isoformat()}  # fmt: skip
    if code is not None:
        record["service_code"] = code
    return record


def reading(sensor: str, value: float, at: datetime, kind: str = "water_level") -> dict[str, Any]:
    return {"sensor_id": sensor, "kind": kind, "value": value, "unit": "cm", "lat": LAT, "lon": LON,
            "observed_at": at.isoformat()}  # fmt: skip


@pytest.fixture
def loop(pack: CityPack) -> Loop:
    return Loop(pack, Words({"flood": ("flooding", 0.95), "hole": ("pothole", 0.97), "maybe": ("graffiti", 0.3)}))
