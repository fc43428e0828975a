"""Work orders, their indexes and the SLA timer in Redis.

Keys, under a namespace ``ns``:

* ``ns:order:<incident>``: hash, ``o`` the order (JSON) and ``v`` its version;
  ``ns:order:<incident>:ev``: the ids of the events applied to it;
  ``ns:order:<incident>:refused``: hash, event id -> why it was refused;
* ``ns:unit:<unit>:orders``: sorted set of the orders a unit holds (by dispatch time);
  ``ns:unit:<unit>:inbox``: stream of assignments and withdrawals (the unit's push channel);
* ``ns:sla:yellow`` / ``ns:sla:red``: sorted sets of orders by their light;
* ``ns:timers``: sorted set of deadlines (``order|stage|level|deadline ms`` by when due);
  ``ns:timers:firing``: those popped and being emitted, by when their lease ends;
* ``ns:life:sensor:<sensor>``: the order a sensor's last verified alarm belonged to (for reopening);
* ``ns:open``: sorted set of the orders not finished (by last change), for the ops centre's board;
  ``ns:board``: stream of every order's change as the board shows it (``order`` entries; the triage queue adds
  ``triage`` and ``triaged`` ones), the board's live feed;
* ``ns:updates``: sorted set of what reporters are told (feedback/updates.py), a JSON entry per told step of an order
  (or a note posted through Open311) by its time in ms, trimmed by age and length as it is written;
  ``ns:updates:from:<incident>``: the orders merged into this one (their reports follow it);
  ``ns:updates:src:<incident>``: the reports that opened or joined it (kept as long as the feed; the incident index
  forgets them a week after the last report);
  ``ns:updates:posted:<digest>``: the update id a poster's own update id was given (a retried post is one note).

An order is written with a compare-and-set on its version together with its
applied event ids and every index change, in one Lua script, so an event is
applied once and indexes never disagree with the order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from feedback.orders import FINISHED, WorkOrder
from feedback.sla import BusinessCalendar
from feedback.updates import UPDATES, UPDATES_KEEP_S, entry_ms, feed_ops
from feedback.views import assignment_view, board_view

BOARD_STREAM = "board"  # ns:board, written by the order store and the triage queue (streams/state.py)
BOARD_LEN = 20_000  # entries kept: a board that reconnects within them misses nothing

# Every change of a batch in one call (a pipeline of one script per order cost more in the client than in Redis).
# ARGV, per change: key, expected version, order JSON, new version, event-id TTL, retention ('' = keep), index ops
# JSON, n, then n event ids. Each change is a compare-and-set of its own; answers 1 (written) or 0 (lost) per change.
_SAVE = """
local out, i = {}, 1
while i <= #ARGV do
  local key, n = ARGV[i], tonumber(ARGV[i + 7])
  local v = redis.call('HGET', key, 'v') or ''
  if v ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    redis.call('HSET', key, 'v', ARGV[i + 3], 'o', ARGV[i + 2])
    if ARGV[i + 5] ~= '' then redis.call('EXPIRE', key, ARGV[i + 5]) else redis.call('PERSIST', key) end
    for j = 1, n do redis.call('SADD', key .. ':ev', ARGV[i + 7 + j]) end
    redis.call('EXPIRE', key .. ':ev', ARGV[i + 4])
    for _, op in ipairs(cjson.decode(ARGV[i + 6])) do
      local name = op[1]
      if name == 'zadd' then redis.call('ZADD', op[2], op[3], op[4])
      elseif name == 'zrem' then redis.call('ZREM', op[2], op[3])
      elseif name == 'set' then redis.call('SET', op[2], op[3], 'EX', op[4])
      elseif name == 'xadd' then redis.call('XADD', op[2], 'MAXLEN', '~', op[3], '*', 'event', op[4], 'data', op[5])
      elseif name == 'ztrim' then
        redis.call('ZREMRANGEBYSCORE', op[2], '-inf', '(' .. op[3])
        redis.call('ZREMRANGEBYRANK', op[2], 0, -tonumber(op[4]) - 1)
      elseif name == 'sadd' then redis.call('SADD', op[2], op[3]); redis.call('EXPIRE', op[2], op[4])
      elseif name == 'expire' then redis.call('EXPIRE', op[2], op[3])
      end
    end
    out[#out + 1] = 1
  end
  i = i + 8 + n
end
return out
"""

# ARGV = order keys; answers the order JSON and version of each (false when absent).
_LOAD = """
local out = {}
for i = 1, #ARGV do
  local h = redis.call('HMGET', ARGV[i], 'o', 'v')
  out[#out + 1] = h[1]
  out[#out + 1] = h[2]
end
return out
"""

# ARGV = (order key, event id) pairs; answers 1 if the order applied the event.
_APPLIED = """
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = redis.call('SISMEMBER', ARGV[i] .. ':ev', ARGV[i + 1]) end
return out
"""

_POP = """
local out = {}
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(stale) do
  redis.call('ZADD', KEYS[2], ARGV[3], m)
  table.insert(out, m)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[3], m)
  table.insert(out, m)
end
return out
"""


class ConcurrentUpdate(Exception):
    """Another writer changed an order since it was read; the batch is retried."""


@dataclass(frozen=True)
class Change:
    """One order written: as it was read (None if new), as it is now, and the events that made it so."""

    before: WorkOrder | None
    after: WorkOrder
    event_ids: tuple[str, ...]


class OrderStore(Protocol):
    async def load(self, incident_ids: Sequence[str]) -> dict[str, WorkOrder | None]: ...

    async def applied(self, pairs: Sequence[tuple[str, str]]) -> list[bool]: ...

    async def save(self, changes: Sequence[Change]) -> None: ...

    async def refuse(self, incident_id: str, event_id: str, code: str, reason: str) -> None: ...

    async def outcome(self, incident_id: str, event_id: str) -> tuple[str, str | None, str | None] | None: ...

    async def pop_due(self, now_ms: int, limit: int, lease_ms: int) -> list[str]: ...

    async def fired(self, members: Sequence[str]) -> None: ...

    async def sensor_order(self, sensor_ids: Sequence[str]) -> dict[str, str]: ...

    async def unit_orders(self, unit_id: str, limit: int = 500) -> list[WorkOrder]: ...

    async def lights(self, limit: int = 1000) -> dict[str, list[WorkOrder]]: ...

    async def inbox(self, unit_id: str, last_id: str, block_ms: int, count: int = 100) -> list[Any]: ...

    async def open_orders(self, limit: int = 10_000) -> list[WorkOrder]: ...

    async def board_events(self, last_id: str, block_ms: int, count: int = 500) -> list[tuple[str, str, str]]: ...

    async def board_tail(self) -> str: ...

    async def inbox_tail(self, unit_id: str) -> str: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(replies: Any) -> list[tuple[str, str, str]]:
    """XREAD's answer as (entry id, event, data)."""
    entries: list[tuple[str, str, str]] = []
    for _stream, items in replies or []:
        for entry_id, fields in items:
            decoded = {_text(k): _text(v) for k, v in fields.items()}
            entries.append((_text(entry_id), decoded.get("event", "message"), decoded.get("data", "{}")))
    return entries


class RedisOrderStore:
    """:class:`OrderStore` on a Redis asyncio client."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        calendar: BusinessCalendar | None,
        *,
        event_ttl_s: int = 7 * 86400,
        retention_s: int = 7 * 86400,
        sensor_reopen_s: int = 6 * 3600,
        inbox_len: int = 1000,
    ) -> None:
        self._redis = client
        self._ns = namespace
        self._calendar = calendar
        self._event_ttl = event_ttl_s
        self._retention = retention_s
        self._reopen = max(1, sensor_reopen_s)
        self._inbox_len = inbox_len
        self._save = client.register_script(_SAVE)
        self._load = client.register_script(_LOAD)
        self._applied = client.register_script(_APPLIED)
        self._pop = client.register_script(_POP)

    # ------------------------------------------------------------------- keys

    def order_key(self, incident_id: str) -> str:
        return f"{self._ns}:order:{incident_id}"

    def unit_key(self, unit_id: str) -> str:
        return f"{self._ns}:unit:{unit_id}:orders"

    def inbox_key(self, unit_id: str) -> str:
        return f"{self._ns}:unit:{unit_id}:inbox"

    @property
    def timers_key(self) -> str:
        return f"{self._ns}:timers"

    @property
    def board_key(self) -> str:
        return f"{self._ns}:{BOARD_STREAM}"

    @property
    def open_key(self) -> str:
        return f"{self._ns}:open"

    @property
    def updates_key(self) -> str:
        return f"{self._ns}:{UPDATES}"

    # ------------------------------------------------------------------ orders

    async def load(self, incident_ids: Sequence[str]) -> dict[str, WorkOrder | None]:
        ids = list(dict.fromkeys(incident_ids))
        if not ids:
            return {}
        flat = await self._load(keys=[], args=[self.order_key(i) for i in ids])
        result: dict[str, WorkOrder | None] = {}
        for index, incident_id in enumerate(ids):
            raw, version = flat[2 * index], flat[2 * index + 1]
            if raw is None:
                result[incident_id] = None
                continue
            data = orjson.loads(raw)
            data["version"] = int(version or 0)
            result[incident_id] = WorkOrder.from_dict(data)
        return result

    async def applied(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        if not pairs:
            return []
        args = [part for incident_id, event_id in pairs for part in (self.order_key(incident_id), event_id)]
        return [bool(r) for r in await self._applied(keys=[], args=args)]

    async def save(self, changes: Sequence[Change]) -> None:
        """Write every change with its index updates; raise :class:`ConcurrentUpdate` if one lost a race."""
        if not changes:
            return
        args: list[Any] = []
        for change in changes:
            before, after = change.before, change.after
            data = after.to_dict()
            data.pop("version", None)
            args += [
                self.order_key(after.incident_id),
                "" if before is None else str(before.version),
                orjson.dumps(data),
                str((0 if before is None else before.version) + 1),
                str(self._event_ttl),
                str(self._retention) if after.state in FINISHED else "",
                orjson.dumps(self._index_ops(before, after, change.event_ids)),
                str(len(change.event_ids)),
                *change.event_ids,
            ]
        replies = await self._save(keys=[], args=args)
        lost = [c.after.incident_id for c, ok in zip(changes, replies, strict=True) if not int(ok)]
        if lost:
            raise ConcurrentUpdate(f"orders changed by another writer: {', '.join(lost[:5])}")

    def _index_ops(self, before: WorkOrder | None, after: WorkOrder, event_ids: Sequence[str] = ()) -> list[list[Any]]:
        ops: list[list[Any]] = []
        incident = after.incident_id
        old_holder = None if before is None else before.holder
        new_holder = after.holder
        reassigned = before is None or before.task_id != after.task_id
        if old_holder and (old_holder != new_holder or reassigned):
            ops.append(["zrem", self.unit_key(old_holder), incident])
            if old_holder != new_holder or after.state in FINISHED:
                payload = {"task_id": before.task_id if before else None, "incident_id": incident,
                           "state": after.state.value}  # fmt: skip
                ops.append(["xadd", self.inbox_key(old_holder), self._inbox_len, "withdrawn",
                            orjson.dumps(payload).decode()])  # fmt: skip
        if new_holder and (old_holder != new_holder or reassigned):
            ops.append(["zadd", self.unit_key(new_holder), str(after.updated_at.timestamp()), incident])
            ops.append(["xadd", self.inbox_key(new_holder), self._inbox_len, "assignment",
                        orjson.dumps(assignment_view(after, self._calendar)).decode()])  # fmt: skip
        old_light = "green" if before is None else before.light()
        new_light = after.light()
        if old_light != new_light:
            if old_light != "green":
                ops.append(["zrem", f"{self._ns}:sla:{old_light}", incident])
            if new_light != "green":
                ops.append(["zadd", f"{self._ns}:sla:{new_light}", str(after.updated_at.timestamp()), incident])
        old_timers = {} if before is None else before.timers(self._calendar)
        new_timers = after.timers(self._calendar)
        for member in old_timers.keys() - new_timers.keys():
            ops.append(["zrem", self.timers_key, member])
        for member in new_timers.keys() - old_timers.keys():
            ops.append(["zadd", self.timers_key, str(int(new_timers[member].timestamp() * 1000)), member])
        # the board: every change, and the set of orders not finished
        ops.append(
            ["xadd", self.board_key, BOARD_LEN, "order", orjson.dumps(board_view(after, self._calendar)).decode()]
        )
        if after.state in FINISHED:
            if before is not None and before.state not in FINISHED:
                ops.append(["zrem", self.open_key, incident])
        else:
            ops.append(["zadd", self.open_key, str(after.updated_at.timestamp()), incident])
        # verification and its close are often written together: look at the time, not the state
        newly_verified = after.verified_at is not None and (before is None or before.verified_at != after.verified_at)
        if newly_verified and after.sensor_id:
            ops.append(["set", f"{self._ns}:life:sensor:{after.sensor_id}", incident, self._reopen])
        return ops + feed_ops(self.updates_key, before, after, event_ids)

    async def refuse(self, incident_id: str, event_id: str, code: str, reason: str) -> None:
        key = f"{self.order_key(incident_id)}:refused"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, event_id, json.dumps({"code": code, "reason": reason}))
        pipe.expire(key, self._event_ttl)
        await pipe.execute()

    async def outcome(self, incident_id: str, event_id: str) -> tuple[str, str | None, str | None] | None:
        """("applied", None, None), ("refused", code, reason), or None while the event is not processed."""
        key = self.order_key(incident_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(f"{key}:ev", event_id)
        pipe.hget(f"{key}:refused", event_id)
        applied, refused = await pipe.execute()
        if applied:
            return ("applied", None, None)
        if refused is not None:
            why = json.loads(refused)
            return ("refused", why["code"], why["reason"])
        return None

    # ------------------------------------------------------------------ timers

    async def pop_due(self, now_ms: int, limit: int, lease_ms: int) -> list[str]:
        """Take deadlines due by ``now_ms`` (and ones whose emitter's lease ran out) to emit them.

        They move to the firing set with a lease; :meth:`fired` removes them
        once their events are on the broker. A worker that dies in between
        leaves them there, and whoever pops after the lease takes them again.
        """
        keys = [self.timers_key, f"{self.timers_key}:firing"]
        members = await self._pop(keys=keys, args=[now_ms, limit, now_ms + lease_ms])
        return [_text(m) for m in members]

    async def fired(self, members: Sequence[str]) -> None:
        if members:
            await self._redis.zrem(f"{self.timers_key}:firing", *members)

    async def sensor_order(self, sensor_ids: Sequence[str]) -> dict[str, str]:
        """The order each sensor's last verified alarm belongs to, while a re-alarm would still reopen it."""
        ids = list(dict.fromkeys(sensor_ids))
        if not ids:
            return {}
        values = await self._redis.mget([f"{self._ns}:life:sensor:{s}" for s in ids])
        return {s: _text(v) for s, v in zip(ids, values, strict=True) if v is not None}

    # ------------------------------------------------------------------- views

    async def unit_orders(self, unit_id: str, limit: int = 500) -> list[WorkOrder]:
        ids = [_text(m) for m in await self._redis.zrange(self.unit_key(unit_id), 0, limit - 1)]
        orders = await self.load(ids)
        return [o for o in (orders[i] for i in ids) if o is not None and o.holder == unit_id]

    async def lights(self, limit: int = 1000) -> dict[str, list[WorkOrder]]:
        result: dict[str, list[WorkOrder]] = {}
        for light in ("yellow", "red"):
            ids = [_text(m) for m in await self._redis.zrange(f"{self._ns}:sla:{light}", 0, limit - 1)]
            orders = await self.load(ids)
            result[light] = [o for o in (orders[i] for i in ids) if o is not None and o.light() == light]
        return result

    async def inbox(self, unit_id: str, last_id: str, block_ms: int, count: int = 100) -> list[tuple[str, str, str]]:
        """Entries of a unit's push channel after ``last_id`` ("$" for new ones): (id, event, data)."""
        return _entries(await self._redis.xread({self.inbox_key(unit_id): last_id}, block=block_ms, count=count))

    async def open_orders(self, limit: int = 10_000) -> list[WorkOrder]:
        """The orders not finished, most recently changed first (at most ``limit``)."""
        ids = [_text(m) for m in await self._redis.zrevrange(self.open_key, 0, limit - 1)]
        orders = await self.load(ids)
        return [o for o in (orders[i] for i in ids) if o is not None and o.state not in FINISHED]

    async def board_events(self, last_id: str, block_ms: int, count: int = 500) -> list[tuple[str, str, str]]:
        """Entries of the board's feed after ``last_id``: (id, event, data)."""
        return _entries(await self._redis.xread({self.board_key: last_id}, block=block_ms, count=count))

    async def board_tail(self) -> str:
        """The id of the newest entry of the board's feed ("0-0" if empty)."""
        last = await self._redis.xrevrange(self.board_key, count=1)
        return _text(last[0][0]) if last else "0-0"

    async def inbox_tail(self, unit_id: str) -> str:
        """The id of the newest entry of a unit's push channel ("0-0" if empty)."""
        last = await self._redis.xrevrange(self.inbox_key(unit_id), count=1)
        return _text(last[0][0]) if last else "0-0"

    # ------------------------------------------------------- reporters' feed

    async def updates_between(self, start_ms: int, end_ms: int, offset: int, count: int) -> list[dict[str, Any]]:
        """Entries of the reporters' feed timed in [start_ms, end_ms], oldest first: ``count`` from ``offset``."""
        members = await self._redis.zrangebyscore(self.updates_key, start_ms, end_ms, start=offset, num=count)
        return [orjson.loads(m) for m in members]

    async def followers(self, incident_ids: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """For each order: the orders merged into it, and the report sources its changes recorded (one round trip)."""
        ids = list(dict.fromkeys(incident_ids))
        pipe = self._redis.pipeline(transaction=False)
        for incident in ids:
            pipe.smembers(f"{self.updates_key}:from:{incident}")
            pipe.smembers(f"{self.updates_key}:src:{incident}")
        replies = await pipe.execute() if ids else []
        sets = [sorted(_text(m) for m in members) for members in replies]
        return dict(zip(ids, sets[0::2], strict=True)), dict(zip(ids, sets[1::2], strict=True))

    async def record_reports(self, joined: dict[str, list[str]]) -> None:
        """Reports that joined orders' incidents (their merged notices): they follow those orders from now on."""
        pipe = self._redis.pipeline(transaction=False)
        for incident, sources in joined.items():
            pipe.sadd(f"{self.updates_key}:src:{incident}", *sources)
            pipe.expire(f"{self.updates_key}:src:{incident}", UPDATES_KEEP_S)
        await pipe.execute()

    async def add_note(self, entry: dict[str, Any], claim: str) -> str:
        """Add a posted note to the feed once per ``claim`` (the poster's own update id); the event id it has."""
        key = f"{self.updates_key}:posted:{claim}"
        if not await self._redis.set(key, entry["event_id"], nx=True, ex=UPDATES_KEEP_S):
            earlier = await self._redis.get(key)
            return entry["event_id"] if earlier is None else _text(earlier)
        await self._redis.zadd(self.updates_key, {orjson.dumps(entry).decode(): entry_ms(entry)})
        return str(entry["event_id"])
