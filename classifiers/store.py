"""Open incidents in Redis: a GEO index per merge family and an atomic merge-or-open.

Keys, under a namespace ``ns``:

* ``ns:open:<family>``: GEO set of open incidents of the family;
* ``ns:openlast:<family>``: sorted set, incident -> last sighting (event time);
* ``ns:wm:<family>``: the family's watermark, the latest event time seen;
* ``ns:inc:<id>``: hash with lat, lon, cat, fam, first, last, tok, n;
  ``ns:inc:<id>:src``: the set of every source id merged into it;
  ``ns:inc:<id>:said``: hash, source id -> what it said (a short JSON the caller gives: for people reading the
  incident), for the first :data:`SAID_KEPT` sources;
* ``ns:src:<source id>``: ``<incident id>|<1 if it opened the incident>``.

Incidents leave the index when their last sighting falls more than the window
(plus a grace period, for late reports) behind the family's watermark, or when
they are closed. Expiry runs on event time, so replaying old data merges the
way live data would. Every decision is recorded per source id, so a redelivered
report gets the same answer and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SAID_KEPT = 50  # sources whose words an incident keeps (a thousand reports of one flood need not all be stored)
SAID_KEPT_TEXT = str(SAID_KEPT)

_MERGE_BATCH = """
-- One call decides a whole batch, in order: ARGV[1] is a JSON array of argument arrays (see merge_or_open).
local function state(ns, id)
  return redis.call('HMGET', ns .. ':inc:' .. id, 'lat', 'lon', 'cat', 'first', 'last', 'n', 'org', 'conf', 'by')
end
local function listed(ns, id, limit)
  if limit > 0 then return redis.call('SRANDMEMBER', ns .. ':inc:' .. id .. ':src', limit) end
  return {}
end
local function said(key, A)
  if A[20] ~= '' and redis.call('HLEN', key .. ':said') < tonumber(A[21]) then
    redis.call('HSET', key .. ':said', A[2], A[20])
  end
  redis.call('EXPIRE', key .. ':said', tonumber(A[10]))
end
local function decide(A)
  local ns = A[11]
  local limit = tonumber(A[19])
  local K1, K2 = ns .. ':open:' .. A[14], ns .. ':openlast:' .. A[14]
  local K3, K4 = ns .. ':src:' .. A[2], ns .. ':wm:' .. A[14]
  local known = redis.call('GET', K3)
  if known then
    local id, flag = string.match(known, '^(.*)|(%d)$')
    local h = state(ns, id)
    return {id, flag, '-1', '-1', h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], listed(ns, id, limit)}
  end
  local ts = tonumber(A[5])
  local radius = tonumber(A[6])
  local window = tonumber(A[7])
  local ttl = tonumber(A[10])
  local wm = tonumber(redis.call('GET', K4) or '-1e18')
  if ts > wm then
    redis.call('SET', K4, A[5], 'EX', ttl)
    wm = ts
  end
  local cutoff = '(' .. tostring(wm - window - tonumber(A[13]))
  local stale = redis.call('ZRANGEBYSCORE', K2, '-inf', cutoff, 'LIMIT', 0, 64)
  for _, id in ipairs(stale) do
    redis.call('ZREM', K1, id)
    redis.call('ZREM', K2, id)
  end
  local mine, nmine = {}, 0
  for t in string.gmatch(A[8], '%S+') do
    if not mine[t] then mine[t] = true; nmine = nmine + 1 end
  end
  local hits = redis.call('GEOSEARCH', K1, 'FROMLONLAT', A[3], A[4], 'BYRADIUS', A[6], 'm', 'ASC',
    'COUNT', 16, 'WITHDIST')
  local best, bestscore, bestdist, bestsim = nil, nil, nil, nil
  for _, hit in ipairs(hits) do
    local id, dist = hit[1], tonumber(hit[2])
    local h = redis.call('HMGET', ns .. ':inc:' .. id, 'first', 'last', 'tok')
    if h[2] then
      local first, last = tonumber(h[1]), tonumber(h[2])
      if ts <= last + window and ts >= first - window then
        local inter, nother, seen = 0, 0, {}
        for t in string.gmatch(h[3] or '', '%S+') do
          if not seen[t] then
            seen[t] = true; nother = nother + 1
            if mine[t] then inter = inter + 1 end
          end
        end
        local union = nmine + nother - inter
        local sim = 0
        if union > 0 then sim = inter / union end
        local score = dist / radius + tonumber(A[12]) * (1 - sim)
        if score <= tonumber(A[18]) and (bestscore == nil or score < bestscore) then
          best, bestscore, bestdist, bestsim = id, score, dist, sim
        end
      end
    end
  end
  if best then
    local key = ns .. ':inc:' .. best
    local h = redis.call('HMGET', key, 'first', 'last')
    local first, last = math.min(tonumber(h[1]), ts), math.max(tonumber(h[2]), ts)
    redis.call('HSET', key, 'first', string.format('%.6f', first), 'last', string.format('%.6f', last))
    redis.call('HINCRBY', key, 'n', 1)
    redis.call('SADD', key .. ':src', A[2])
    said(key, A)
    redis.call('EXPIRE', key, ttl)
    redis.call('EXPIRE', key .. ':src', ttl)
    redis.call('ZADD', K2, string.format('%.6f', last), best)
    redis.call('SET', K3, best .. '|0', 'EX', ttl)
    local out = state(ns, best)
    return {best, '0', tostring(bestdist), tostring(bestsim), out[1], out[2], out[3], out[4], out[5], out[6], out[7],
      out[8], out[9], listed(ns, best, limit)}
  end
  local id = A[1]
  local key = ns .. ':inc:' .. id
  redis.call('GEOADD', K1, A[3], A[4], id)
  redis.call('ZADD', K2, A[5], id)
  redis.call('HSET', key, 'lat', A[4], 'lon', A[3], 'cat', A[9], 'fam', A[14], 'first', A[5],
    'last', A[5], 'tok', A[8], 'n', '1', 'org', A[15], 'conf', A[16], 'by', A[17])
  redis.call('SADD', key .. ':src', A[2])
  said(key, A)
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', key .. ':src', ttl)
  redis.call('SET', K3, id .. '|1', 'EX', ttl)
  return {id, '1', '-1', '-1', A[4], A[3], A[9], A[5], A[5], '1', A[15], A[16], A[17], {A[2]}}
end
local out = {}
for i, A in ipairs(cjson.decode(ARGV[1])) do
  out[i] = decide(A)
end
return out
"""


# ARGV = namespace, then (incident id, category, family) triples: an open incident moves to its new category's
# family, so later reports of that category can join it. Answers how many were open and moved.
_RECATEGORISE = """
local ns, moved = ARGV[1], 0
for i = 2, #ARGV, 3 do
  local id, cat, fam = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ns .. ':inc:' .. id
  local h = redis.call('HMGET', key, 'fam', 'lat', 'lon', 'last', 'closed')
  if h[1] then
    redis.call('HSET', key, 'cat', cat, 'fam', fam)
    local removed = redis.call('ZREM', ns .. ':open:' .. h[1], id)
    redis.call('ZREM', ns .. ':openlast:' .. h[1], id)
    if removed == 1 and not h[5] then
      redis.call('GEOADD', ns .. ':open:' .. fam, h[3], h[2], id)
      redis.call('ZADD', ns .. ':openlast:' .. fam, h[4], id)
      moved = moved + 1
    end
  end
end
return moved
"""

# ARGV = namespace, then incident ids; answers how many left the open index.
_CLOSE = """
local ns, removed = ARGV[1], 0
for i = 2, #ARGV do
  local key = ns .. ':inc:' .. ARGV[i]
  local fam = redis.call('HGET', key, 'fam')
  if fam then
    removed = removed + redis.call('ZREM', ns .. ':open:' .. fam, ARGV[i])
    redis.call('ZREM', ns .. ':openlast:' .. fam, ARGV[i])
    redis.call('HSET', key, 'closed', '1')
  end
end
return removed
"""


@dataclass(frozen=True, slots=True)
class Sighting:
    """A report or alarm looking for its incident."""

    source_id: str  # e.g. "report:<id>" or "sensor:<id>:<opened at>"
    new_incident_id: str  # the id to use if it opens a new incident
    category: str
    family: str
    lat: float
    lon: float
    event_ts: float  # epoch seconds of the report / observation
    radius_m: float
    window_s: float
    tokens: tuple[str, ...]
    origin: str = "report"  # what kind of source opens the incident: "report" or "sensor"
    confidence: float = 1.0  # how sure the category is
    classified_by: str = "service_code"
    said: str = ""  # what the source said, for people reading the incident (kept as given, see SAID_KEPT)


@dataclass(frozen=True, slots=True)
class MergeDecision:
    """Where a sighting went, and the incident as it stands after it."""

    incident_id: str
    opened: bool
    source_id: str
    distance_m: float | None
    similarity: float | None
    lat: float
    lon: float
    category: str
    first_seen: float
    last_seen: float
    sources: int
    origin: str = "report"  # of the incident: what opened it
    confidence: float = 1.0  # of the incident's category
    classified_by: str = "service_code"
    listed: tuple[str, ...] = ()  # up to ``list_sources`` of its source ids, sorted (when asked for)


class IncidentIndex(Protocol):
    async def merge_or_open(
        self,
        sightings: Sequence[Sighting],
        text_weight: float = 0.5,
        max_score: float | None = None,
        list_sources: int = 0,
    ) -> list[MergeDecision]: ...

    async def close(self, incident_id: str) -> bool: ...

    async def close_many(self, incident_ids: Sequence[str]) -> int: ...

    async def recategorise(self, changes: Sequence[tuple[str, str, str]]) -> int: ...

    async def source_ids(self, incident_id: str, limit: int = 1000) -> list[str]: ...

    async def source_ids_many(self, incident_ids: Sequence[str], limit: int = 1000) -> list[list[str]]: ...

    async def incident_of(self, source_id: str) -> str | None: ...


class RedisIncidentIndex:
    """The open-incident index on a Redis (>= 6.2 for GEOSEARCH) asyncio client."""

    def __init__(self, client: Any, namespace: str, ttl_s: int = 7 * 86400, grace_s: float = 3600.0) -> None:
        self._redis = client
        self._ns = namespace
        self._ttl = ttl_s
        self._grace = grace_s
        self._merge = client.register_script(_MERGE_BATCH)
        self._close = client.register_script(_CLOSE)
        self._recategorise = client.register_script(_RECATEGORISE)

    async def merge_or_open(
        self,
        sightings: Sequence[Sighting],
        text_weight: float = 0.5,
        max_score: float | None = None,
        list_sources: int = 0,
    ) -> list[MergeDecision]:
        """Decide every sighting in order, in one round trip; later ones see earlier ones' incidents.

        With ``list_sources`` > 0 each decision also lists up to that many of
        its incident's source ids as they stand after it (saves a round trip
        for callers that publish them).

        ``max_score`` makes words a veto as well as a tie-breaker: a candidate
        joins only if distance / radius + text_weight * (1 - similarity) is at
        most this. The default (1 + text_weight) vetoes nothing within the
        radius; on the Red Hook stream a veto cost far more recall than it
        gained precision (see tests/data/test_redhook_merge.py).
        """
        if not sightings:
            return []
        if max_score is None:
            max_score = 1.0 + text_weight
        ns, ttl, weight, grace, limit = self._ns, str(self._ttl), repr(text_weight), repr(self._grace), repr(max_score)
        batch = [
            [s.new_incident_id, s.source_id, repr(s.lon), repr(s.lat), repr(s.event_ts), repr(s.radius_m),
             repr(s.window_s), " ".join(s.tokens), s.category, ttl, ns, weight, grace, s.family, s.origin,
             repr(s.confidence), s.classified_by, limit, str(list_sources), s.said, SAID_KEPT_TEXT]
            for s in sightings
        ]  # fmt: skip
        # one script call for the whole batch: decisions stay in order, and packing one argument is cheap
        replies = await self._merge(keys=[], args=[json.dumps(batch)])
        return [_decision(s, reply) for s, reply in zip(sightings, replies, strict=True)]

    async def close(self, incident_id: str) -> bool:
        """Take an incident out of the open index: nothing merges into it any more."""
        return await self.close_many([incident_id]) > 0

    async def recategorise(self, changes: Sequence[tuple[str, str, str]]) -> int:
        """(incident, new category, its merge family): an open incident now merges as its new category."""
        if not changes:
            return 0
        args = [self._ns, *(part for change in changes for part in change)]
        return int(await self._recategorise(keys=[], args=args))

    async def close_many(self, incident_ids: Sequence[str]) -> int:
        """:meth:`close` for many, in one round trip; returns how many were still open."""
        if not incident_ids:
            return 0
        return int(await self._close(keys=[], args=[self._ns, *incident_ids]))

    async def incident_of(self, source_id: str) -> str | None:
        """The incident a source was merged into or opened, if it was seen."""
        known = await self._redis.get(f"{self._ns}:src:{source_id}")
        return None if known is None else _text(known).rsplit("|", 1)[0]

    async def source_ids(self, incident_id: str, limit: int = 1000) -> list[str]:
        return (await self.source_ids_many([incident_id], limit))[0]

    async def source_ids_many(self, incident_ids: Sequence[str], limit: int = 1000) -> list[list[str]]:
        """Every source id of each incident (at most ``limit`` each), sorted; one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for incident_id in incident_ids:
            pipe.srandmember(f"{self._ns}:inc:{incident_id}:src", limit)
        replies = await pipe.execute()
        return [sorted(_text(m) for m in members) for members in replies]

    async def said(self, incident_id: str) -> dict[str, Any]:
        """What each source kept with the incident said (see :data:`SAID_KEPT`), by source id, decoded."""
        stored = await self._redis.hgetall(f"{self._ns}:inc:{incident_id}:said")
        out: dict[str, Any] = {}
        for source, value in stored.items():
            try:
                out[_text(source)] = json.loads(value)
            except ValueError:
                out[_text(source)] = {"text": _text(value)}
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decision(sighting: Sighting, reply: list[Any]) -> MergeDecision:
    incident_id, opened, distance, similarity, lat, lon, category, first, last, count, origin, conf, by = [
        v.decode() if type(v) is bytes else str(v) for v in reply[:13]
    ]
    return MergeDecision(
        incident_id=incident_id,
        opened=opened == "1",
        source_id=sighting.source_id,
        distance_m=None if distance == "-1" else float(distance),
        similarity=None if similarity == "-1" else float(similarity),
        lat=float(lat),
        lon=float(lon),
        category=category,
        first_seen=float(first),
        last_seen=float(last),
        sources=int(count),
        origin=origin,
        confidence=float(conf),
        classified_by=by,
        listed=tuple(sorted([_text(v) for v in reply[13]])) if len(reply) > 13 else (),
    )
