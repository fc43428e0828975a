"""A simulated city: residents who report problems and sensors with daily cycles.

The simulator produces records of the public stream contract, so it can load
any CityLoop deployment. It keeps a pool of real-world problems; residents
report them in words from the seed corpus (several residents per problem),
some reports are garbage, some are sent twice, and sensors drift through a
(compressed) daily cycle with injected excursions: floods, noise, smog, a burst
main.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from classifiers.text import seed_corpus

SENSOR_KINDS = {
    # kind: (unit, baseline, daily amplitude, excursion value)
    "water_level": ("cm", 8.0, 4.0, 45.0),
    "noise_level": ("dBA", 55.0, 10.0, 95.0),
    "pm25": ("ug/m3", 18.0, 8.0, 120.0),
    "water_pressure": ("bar", 3.5, 0.3, 0.8),
}


@dataclass
class Problem:
    category: str
    lat: float
    lon: float
    reports_left: int


@dataclass
class Sensor:
    sensor_id: str
    kind: str
    lat: float
    lon: float
    phase: float
    excursion_until: float = 0.0


@dataclass
class SimulatedRecord:
    stream: str  # "reports" or "readings"
    key: bytes | None
    value: bytes
    report_id: str | None = None
    valid: bool = True
    category: str | None = None  # the true category of the problem reported


@dataclass
class CitySimulator:
    """Generates a stream of reports and readings for a city within ``bbox``."""

    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat
    run_id: str
    seed: int = 7
    sensors_count: int = 40
    garbage_share: float = 0.05
    duplicate_share: float = 0.03
    day_seconds: float = 120.0  # one simulated day passes in this many real seconds
    excursion_chance: float = 0.25  # per second, that some sensor starts an excursion
    rng: random.Random = field(init=False)
    _texts: dict[str, list[str]] = field(init=False)
    _problems: list[Problem] = field(init=False, default_factory=list)
    _sensors: list[Sensor] = field(init=False, default_factory=list)
    _sent_reports: list[bytes] = field(init=False, default_factory=list)
    _count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        texts, labels = seed_corpus()
        self._texts = {}
        for text, label in zip(texts, labels, strict=True):
            self._texts.setdefault(label, []).append(text)
        kinds = list(SENSOR_KINDS)
        for i in range(self.sensors_count):
            lon, lat = self._point()
            self._sensors.append(
                Sensor(f"{kinds[i % len(kinds)]}-{i:03d}", kinds[i % len(kinds)], lat, lon, self.rng.random())
            )

    def _point(self) -> tuple[float, float]:
        min_lon, min_lat, max_lon, max_lat = self.bbox
        return self.rng.uniform(min_lon, max_lon), self.rng.uniform(min_lat, max_lat)

    def report(self, now: datetime) -> SimulatedRecord:
        """One resident's report: usually about a known problem, sometimes garbage or a resend."""
        self._count += 1
        roll = self.rng.random()
        if roll < self.garbage_share:
            return SimulatedRecord("reports", None, self._garbage(now), valid=False)
        if roll < self.garbage_share + self.duplicate_share and self._sent_reports:
            value = self.rng.choice(self._sent_reports[-200:])
            return SimulatedRecord("reports", None, value, report_id=json.loads(value)["report_id"], category=None)
        if not self._problems or self.rng.random() < 0.35:
            lon, lat = self._point()
            category = self.rng.choice(list(self._texts))
            self._problems.append(Problem(category, lat, lon, self.rng.randint(1, 6)))
        problem = self.rng.choice(self._problems)
        problem.reports_left -= 1
        if problem.reports_left <= 0:
            self._problems.remove(problem)
        # residents stand near the problem, not on it (about 50 m)
        lat = problem.lat + self.rng.gauss(0, 0.0004)
        lon = problem.lon + self.rng.gauss(0, 0.0006)
        report_id = f"{self.run_id}-r{self._count}"
        record: dict[str, object] = {
            "report_id": report_id,
            "source": self.rng.choice(["app", "app", "phone", "web", "open311"]),
            "text": self._phrase(problem.category),
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "reported_at": now.isoformat(),
        }
        if self.rng.random() < 0.4:  # some apps make the resident pick a category
            record["service_code"] = problem.category
        value = json.dumps(record, ensure_ascii=False).encode()
        self._sent_reports.append(value)
        return SimulatedRecord("reports", report_id.encode(), value, report_id=report_id, category=problem.category)

    def _phrase(self, category: str) -> str:
        text = self.rng.choice(self._texts[category])
        if self.rng.random() < 0.3:
            text = self.rng.choice(["Hi, ", "Please help: ", "URGENT ", "again! "]) + text
        if self.rng.random() < 0.2:
            text += self.rng.choice([" thanks", " since yesterday", " - third time I report this", "!!"])
        return text

    def _garbage(self, now: datetime) -> bytes:
        kind = self.rng.randrange(5)
        if kind == 0:
            return b'{"report_id": "broken' + str(self._count).encode()
        if kind == 1:
            return json.dumps(
                {
                    "report_id": f"{self.run_id}-g{self._count}",
                    "source": "app",
                    "text": "no location given",
                    "reported_at": now.isoformat(),
                }
            ).encode()
        if kind == 2:
            return json.dumps(
                {
                    "report_id": f"{self.run_id}-g{self._count}",
                    "source": "app",
                    "text": "swapped coordinates",
                    "lat": 181.5,
                    "lon": 52.0,
                    "reported_at": now.isoformat(),
                }
            ).encode()
        if kind == 3:
            return b"\xff\xfe not utf-8 " + str(self._count).encode()
        return json.dumps(
            {
                "report_id": f"{self.run_id}-g{self._count}",
                "source": "app",
                "text": "",
                "lat": 52.0,
                "lon": 5.1,
                "reported_at": now.isoformat(),
            }
        ).encode()

    def readings(self, now: datetime, elapsed: float) -> Iterator[SimulatedRecord]:
        """One reading per sensor: baseline + daily cycle + noise, or an injected excursion."""
        if self.rng.random() < self.excursion_chance:  # an incident starts somewhere: it lasts 5-15 s
            sensor = self.rng.choice(self._sensors)
            sensor.excursion_until = elapsed + self.rng.uniform(5, 15)
        for sensor in self._sensors:
            unit, base, amplitude, excursion = SENSOR_KINDS[sensor.kind]
            cycle = math.sin(2 * math.pi * (elapsed / self.day_seconds + sensor.phase))
            value = base + amplitude * cycle + self.rng.gauss(0, amplitude * 0.1)
            if elapsed < sensor.excursion_until:
                value = excursion
            record = {
                "sensor_id": sensor.sensor_id,
                "kind": sensor.kind,
                "value": round(value, 2),
                "unit": unit,
                "lat": sensor.lat,
                "lon": sensor.lon,
                "observed_at": now.isoformat(),
            }
            yield SimulatedRecord("readings", sensor.sensor_id.encode(), json.dumps(record).encode())


def paced(rate: float, duration: float) -> Iterator[tuple[float, int]]:
    """Yield (elapsed, how many reports are due now) ten times a second for ``duration`` seconds."""
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            return
        due = int(elapsed * rate) - sent
        sent += due
        yield elapsed, due
        time.sleep(max(0.0, 0.1 - (time.monotonic() - started - elapsed)))


def play(
    simulator: CitySimulator, rate: float, duration: float
) -> Iterator[tuple[float, list[SimulatedRecord], list[SimulatedRecord]]]:
    """(elapsed, reports due now, sensor readings due now) ten times a second: ``rate`` reports a second, and a
    reading from every sensor once a second, for ``duration`` seconds."""
    last_reading = -1.0
    for elapsed, due in paced(rate, duration):
        now = utc_now()
        reports = [simulator.report(now) for _ in range(due)]
        readings: list[SimulatedRecord] = []
        if elapsed - last_reading >= 1.0:
            last_reading = elapsed
            readings = list(simulator.readings(now, elapsed))
        yield elapsed, reports, readings


def utc_now() -> datetime:
    return datetime.now(UTC)
