"""Durable state in Redis: the emission ledger, per-sensor detector state and the triage queue.

A crashed worker's inputs are delivered again, so every side effect is made
idempotent here (see docs/ARCHITECTURE.md). By default the worker runs at
least once, which any broker supports (the dev broker, Tansu, has no
transactions). On Apache Kafka, ``CITYLOOP_PROCESSING_GUARANTEE=exactly_once``
sends each input batch's output and offsets in one Kafka transaction
(streams/sinks.py); the ledger's *sent* marks and the detector state are then
written only after the transaction commits.

* The **ledger** stores the outcome computed for a key (a report id, an alarm's
  incident id, a dead letter's source offset) the first time it is seen, and
  marks it *sent* once the broker has acknowledged every record of it (exactly
  once: once its transaction has committed). A redelivered key whose outcome
  was sent is skipped; one whose outcome was stored but not confirmed is sent
  again **with the stored outcome**, so ids and assignments never change
  between deliveries.
* **Detector state** is written only after the outcomes of a batch are
  confirmed; a crash before that replays the batch to the same result.
* The **triage queue** keeps each unsure report once, however often it is
  queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from classifiers import DetectorState
from feedback.store import BOARD_LEN, BOARD_STREAM
from streams import metrics
from streams.records import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")

NEW, RESEND, SENT = 0, 1, 2
SENSORS_KEPT = 100_000  # sensors listed for the ops centre: the most recently heard

# One call per batch: ARGV = ttl, then (key, payload) pairs. Answers status, stored payload (empty when NEW).
_CLAIM = """
local ttl = ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  local key = ARGV[i]
  local old = redis.call('GET', key)
  if old then
    if redis.call('EXISTS', key .. ':sent') == 1 then
      out[#out + 1] = 2
    else
      out[#out + 1] = 1
    end
    out[#out + 1] = old
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
return out
"""

_CONFIRM = """
for i = 2, #ARGV do
  redis.call('SET', ARGV[i] .. ':sent', '1', 'EX', ARGV[1])
end
return #ARGV - 1
"""

# Detector state, one call per batch. Load: ARGV = keys; answers alarm, since, last, model per key.
_DETECTOR_LOAD = """
local out = {}
for i = 1, #ARGV do
  local v = redis.call('HMGET', ARGV[i], 'alarm', 'since', 'last', 'model')
  for j = 1, 4 do out[#out + 1] = v[j] end
end
return out
"""

# Save: ARGV = index key, sensors kept in it, then (key, alarm, since, last, model or '', sensor id or '', value,
# kind, unit, lat, lon) per sensor. An empty model leaves the stored one alone; a sensor id writes the sensor's
# newest reading into the same hash and its time into the index (trimmed to the most recently heard sensors).
_DETECTOR_SAVE = """
for i = 3, #ARGV, 11 do
  if ARGV[i + 4] == '' then
    redis.call('HSET', ARGV[i], 'alarm', ARGV[i + 1], 'since', ARGV[i + 2], 'last', ARGV[i + 3])
  else
    redis.call('HSET', ARGV[i], 'alarm', ARGV[i + 1], 'since', ARGV[i + 2], 'last', ARGV[i + 3], 'model', ARGV[i + 4])
  end
  if ARGV[i + 5] ~= '' then
    redis.call('HSET', ARGV[i], 'value', ARGV[i + 6], 'kind', ARGV[i + 7], 'unit', ARGV[i + 8], 'lat', ARGV[i + 9],
               'lon', ARGV[i + 10])
    redis.call('ZADD', ARGV[1], ARGV[i + 3], ARGV[i + 5])
  end
end
redis.call('ZREMRANGEBYRANK', ARGV[1], 0, -1 - tonumber(ARGV[2]))
return (#ARGV - 2) / 11
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_outage_check: Callable[[], Awaitable[None]] | None = None


def set_outage_check(check: Callable[[], Awaitable[None]] | None) -> None:
    """Run ``check`` before retrying a call that failed: a Redis that comes back may have come back empty.

    The worker installs its state guard's epoch check (streams/epoch.py), which raises when the state is gone, so
    the batch stops there instead of writing into an empty Redis (new incidents for repeats of old problems).
    """
    global _outage_check
    _outage_check = check


async def with_retry(operation: str, call: Callable[[], Awaitable[T]], *, max_delay: float = 5.0) -> T:
    """Run a Redis call until it succeeds, backing off; the batch waits, nothing is dropped.

    After a failure, the installed outage check (:func:`set_outage_check`) runs before the call is tried again.
    """
    delay = 0.05
    failed = False
    while True:
        try:
            if failed and _outage_check is not None:
                await _outage_check()
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            failed = True
            metrics.REDIS_ERRORS.labels(operation).inc()
            log.warning("redis %s failed (%s); retrying in %.2fs", operation, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


class Retrying:
    """A store whose listed calls wait out a Redis outage (:func:`with_retry`), for every caller alike.

    ``calls`` maps a method name to the operation label of ``cityloop_redis_errors_total``. Only calls that are
    safe to repeat are listed (reads, and writes that are idempotent: set adds, scripts keyed by source id); a
    compare-and-set such as ``RedisOrderStore.save`` is not, and fails to its caller, whose batch is retried whole.
    Everything else passes through unchanged.
    """

    def __init__(self, store: Any, calls: dict[str, str]) -> None:
        self._store = store
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        operation = self._calls.get(name)
        if operation is None:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await with_retry(operation, lambda: attribute(*args, **kwargs))

        return call


# the worker's stores: which of their calls wait out an outage, and under which label
INCIDENT_CALLS = {"merge_or_open": "merge", "incident_of": "incident_of", "source_ids": "incident_sources",
                  "source_ids_many": "incident_sources", "recategorise": "incident_recategorise",
                  "close_many": "incident_close"}  # fmt: skip
UNIT_CALLS = {"loads": "unit_loads", "positions": "unit_positions", "open_tasks": "unit_open_tasks",
              "apply_holds": "unit_holds"}  # fmt: skip
ORDER_CALLS = {"load": "orders_load", "applied": "orders_applied", "sensor_order": "sensor_orders",
               "refuse": "order_refuse", "pop_due": "timers_pop", "fired": "timers_fired",
               "record_reports": "orders_record_reports"}  # fmt: skip


@dataclass(frozen=True)
class Claim:
    key: str
    status: int  # NEW, RESEND or SENT
    payload: dict[str, Any]


class Ledger:
    """Exactly-once effect of emitting outcomes, on top of at-least-once delivery."""

    def __init__(self, client: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self._redis = client
        self._ns = namespace
        self._ttl = ttl_s
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)

    def _key(self, key: str) -> str:
        return f"{self._ns}:ledger:{key}"

    async def claim(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Claim]:
        """Store each (key, outcome) unless the key is known; say what to do with each (one round trip)."""
        if not items:
            return []
        args: list[Any] = [self._ttl]
        for key, payload in items:
            args += [self._key(key), orjson.dumps(payload)]
        replies = await with_retry("ledger_claim", lambda: self._claim(keys=[], args=args))
        claims = []
        for index, (key, payload) in enumerate(items):
            status, stored = int(replies[2 * index]), replies[2 * index + 1]
            claims.append(Claim(key, status, payload if status == NEW else orjson.loads(stored)))
        return claims

    async def confirm(self, keys: Sequence[str]) -> None:
        """Mark outcomes as acknowledged by the broker (one round trip)."""
        if keys:
            args = [self._ttl, *(self._key(key) for key in keys)]
            await with_retry("ledger_confirm", lambda: self._confirm(keys=[], args=args))


class DetectorStore:
    """Per-sensor detector state and newest reading in Redis hashes, and the index of sensors heard.

    * ``ns:sensor:<id>``: hash. Every state keeps ``alarm``, ``since`` and ``last`` (the time of the last reading
      applied); an adaptive detector's learnt pattern goes in ``model`` as its versioned byte format, so a sensor
      switched between detector kinds keeps its open alarm. The last reading applied is ``value``, ``kind``,
      ``unit``, ``lat``, ``lon`` (its time is ``last``), written with the state: no extra call per batch.
    * ``ns:sensors``: sorted set of sensor ids by the time of their last reading, for the ops centre's sensors view;
      the :data:`SENSORS_KEPT` most recently heard are kept.
    """

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._redis = client
        self._ns = namespace
        # one script call per batch: a pipeline of one command per sensor costs more in the client than in Redis
        self._load = client.register_script(_DETECTOR_LOAD)
        self._save = client.register_script(_DETECTOR_SAVE)

    def _key(self, sensor_id: str) -> str:
        return f"{self._ns}:sensor:{sensor_id}"

    async def load(self, sensor_ids: Sequence[str]) -> dict[str, tuple[DetectorState, bytes | None]]:
        """(alarm state, adaptive model bytes or None) per sensor; a new sensor has a fresh state."""
        keys = [self._key(sensor_id) for sensor_id in sensor_ids]
        flat = await with_retry("detector_load", lambda: self._load(keys=[], args=keys)) if keys else []
        replies = [flat[i : i + 4] for i in range(0, len(flat), 4)]
        states: dict[str, tuple[DetectorState, bytes | None]] = {}
        for sensor_id, (alarm, since, last, model) in zip(sensor_ids, replies, strict=True):
            if last is None:
                states[sensor_id] = (DetectorState(), None)
            else:
                states[sensor_id] = (DetectorState(alarm == b"1", float(since or 0), float(last)), model)
        return states

    async def save(self, states: dict[str, Any], latest: Mapping[str, Reading] | None = None) -> None:
        """Store states: anything with ``alarm``, ``since``, ``last_observed`` (and ``to_bytes`` if learnt).

        Stage *detect* gives threshold states, adaptive states, and for sensors stepped in a bank their rows
        already encoded (``EncodedState``: ``to_bytes`` returns the bank's bytes). ``latest`` is each sensor's
        newest reading applied (``Detected.latest``), kept for the ops centre with the state it led to.
        """

        args: list[Any] = [f"{self._ns}:sensors", SENSORS_KEPT]
        latest = latest or {}
        for sensor_id, state in states.items():
            model = state.to_bytes() if hasattr(state, "to_bytes") else b""
            args += [self._key(sensor_id), "1" if state.alarm else "0", repr(state.since), repr(state.last_observed),
                     model]  # fmt: skip
            reading = latest.get(sensor_id)
            if reading is None:
                args += ["", "", "", "", "", ""]
            else:
                args += [sensor_id, repr(reading.value), reading.kind, reading.unit or "", repr(reading.lat),
                         repr(reading.lon)]  # fmt: skip
        if len(args) > 2:
            await with_retry("detector_save", lambda: self._save(keys=[], args=args))

    async def heard(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """The sensors most recently heard (at most ``limit``, newest first): newest reading and alarm state."""
        fields = ("value", "kind", "unit", "lat", "lon", "last", "alarm", "since")
        ids = [_text(s) for s in await self._redis.zrevrange(f"{self._ns}:sensors", 0, limit - 1)]
        pipe = self._redis.pipeline(transaction=False)
        for sensor_id in ids:
            pipe.hmget(self._key(sensor_id), fields)
        sensors = []
        for sensor_id, values in zip(ids, await pipe.execute() if ids else [], strict=True):
            row = dict(zip(fields, (None if v is None else _text(v) for v in values), strict=True))
            if row["value"] is None or row["last"] is None:
                continue  # trimmed from the index meanwhile, or written before readings were kept
            sensors.append({"sensor_id": sensor_id, "kind": row["kind"], "value": float(row["value"]),
                            "unit": row["unit"] or None, "lat": float(row["lat"] or 0), "lon": float(row["lon"] or 0),
                            "observed_at": float(row["last"]), "alarm": row["alarm"] == "1",
                            "alarm_since": float(row["since"] or 0) if row["alarm"] == "1" else None})  # fmt: skip
        return sensors


class TriageQueue:
    """Reports the classifier was not sure about, waiting for a person at the ops centre.

    ``ns:triage`` is a sorted set (incident id by time queued); ``ns:triage:<id>``
    a hash with the report's text, place, time and the model's guesses (JSON).
    """

    def __init__(self, client: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self._redis = client
        self._ns = namespace
        self._ttl = ttl_s
        self._board = f"{namespace}:{BOARD_STREAM}"  # the ops centre's board hears of each item and decision

    async def add(self, items: Sequence[tuple[str, float, dict[str, Any]]]) -> None:
        """Queue (incident id, queued at epoch, item); adding the same id again changes nothing."""
        if not items:
            return

        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for incident_id, queued_at, item in items:
                pipe.zadd(f"{self._ns}:triage", {incident_id: queued_at}, nx=True)
                pipe.set(f"{self._ns}:triage:{incident_id}", json.dumps(item), ex=self._ttl, nx=True)
                board = {"kind": "triage", "incident_id": incident_id, "queued_at": queued_at, **item}
                pipe.xadd(self._board, {"event": "triage", "data": json.dumps(board)}, maxlen=BOARD_LEN)
            return await pipe.execute()

        await with_retry("triage_add", run)

    async def get(self, incident_id: str) -> dict[str, Any] | None:
        raw = await with_retry("triage_get", lambda: self._redis.get(f"{self._ns}:triage:{incident_id}"))
        return None if raw is None else json.loads(raw)

    async def waiting(self, limit: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """The oldest items still waiting for a decision."""
        ids = await with_retry("triage_list", lambda: self._redis.zrange(f"{self._ns}:triage", 0, limit - 1))
        result = []
        for raw_id in ids:
            incident_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            item = await self.get(incident_id)
            if item is not None:
                result.append((incident_id, item))
        return result

    async def is_waiting(self, incident_id: str) -> bool:
        """Still in the queue (a decided item keeps its record until it expires, but leaves the queue)."""
        score = await with_retry("triage_score", lambda: self._redis.zscore(f"{self._ns}:triage", incident_id))
        return score is not None

    async def done(self, incident_id: str) -> None:
        """A decision was applied: the item leaves the queue (its record stays until it expires)."""

        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(f"{self._ns}:triage", incident_id)
            board = {"kind": "triaged", "incident_id": incident_id}
            pipe.xadd(self._board, {"event": "triaged", "data": json.dumps(board)}, maxlen=BOARD_LEN)
            return await pipe.execute()

        await with_retry("triage_done", run)
