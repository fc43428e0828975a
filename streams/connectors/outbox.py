"""Each connector's queue of deliveries, in Redis: what lets one dead system wait without holding back the others.

The connectors' consumer puts every record for a connected unit in that unit's queue and commits the record's
offset once Redis has it; each connector's courier takes its queue in order and removes a delivery only once the
system took it or it is dead-lettered. So a system that is down for hours leaves its records here (counted by
``cityloop_connector_pending_records``), the topics' offsets move on, and the other connectors go on sending.

Redis keys, under the deployment's namespace ``<ns>``:

=====================================  =======  ================================================================
key                                    type     holds
=====================================  =======  ================================================================
``<ns>:connector:<unit>:queue``        list     delivery keys (task or event ids), oldest first
``<ns>:connector:<unit>:items``        hash     delivery key -> the delivery as JSON
``<ns>:connector:<unit>:attempts``     hash     delivery key -> failed attempts so far
``<ns>:connector:<unit>:seen:<key>``   string   set when queued, expires after the dedup TTL: a redelivered
                                                record is not queued (nor sent) a second time
``<ns>:connector:<unit>:lease``        string   the process whose courier drains the queue (one at a time)
``<ns>:connector:holder:<incident>``   string   the connected unit that holds the incident's newest task
=====================================  =======  ================================================================
"""

from __future__ import annotations

import json
from typing import Any

from streams.connectors.base import Delivery, Kind

_ENQUEUE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
_DONE = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
else
  redis.call('LREM', KEYS[1], 1, ARGV[1])
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def encode(delivery: Delivery) -> str:
    return json.dumps({"unit_id": delivery.unit_id, "kind": delivery.kind.value, "key": delivery.key,
                       "original": delivery.original, "origin": list(delivery.origin),
                       "partition_key": delivery.partition_key, "enqueued_at": delivery.enqueued_at},
                      separators=(",", ":"), ensure_ascii=False)  # fmt: skip


def decode(raw: bytes | str) -> Delivery:
    data = json.loads(raw)
    topic, partition, offset = data["origin"]
    return Delivery(data["unit_id"], Kind(data["kind"]), data["key"], data["original"],
                    (topic, int(partition), int(offset)), data.get("partition_key"),
                    float(data["enqueued_at"]))  # fmt: skip


class Outbox:
    """The queues of every connector (redis.asyncio client)."""

    def __init__(self, client: Any, namespace: str, *, dedup_ttl_s: int, holder_ttl_s: int) -> None:
        self._redis = client
        self._ns = namespace
        self._dedup_ttl_s = dedup_ttl_s
        self._holder_ttl_s = holder_ttl_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._done = client.register_script(_DONE)
        self._lease = client.register_script(_LEASE)

    def _key(self, unit_id: str, what: str) -> str:
        return f"{self._ns}:connector:{unit_id}:{what}"

    def _holder(self, incident_id: str) -> str:
        return f"{self._ns}:connector:holder:{incident_id}"

    async def put(self, deliveries: list[Delivery]) -> int:
        """Queue each delivery not queued before (within the dedup TTL); returns how many were new."""
        if not deliveries:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for d in deliveries:
                keys = [self._key(d.unit_id, f"seen:{d.key}"), self._key(d.unit_id, "queue"),
                        self._key(d.unit_id, "items")]  # fmt: skip
                await self._enqueue(keys=keys, args=[d.key, encode(d), self._dedup_ttl_s], client=pipe)
            return sum(int(n) for n in await pipe.execute())

    async def head(self, unit_id: str) -> tuple[Delivery, int] | None:
        """The oldest delivery waiting for ``unit_id`` and its failed attempts so far."""
        key = await self._redis.lindex(self._key(unit_id, "queue"), 0)
        if key is None:
            return None
        raw, attempts = (
            await self._redis.hget(self._key(unit_id, "items"), key),
            await self._redis.hget(self._key(unit_id, "attempts"), key),
        )
        if raw is None:  # an entry whose item is gone cannot be sent: drop it from the queue
            await self.done(unit_id, key.decode() if isinstance(key, bytes) else key)
            return await self.head(unit_id)
        return decode(raw), int(attempts or 0)

    async def failed(self, unit_id: str, key: str) -> int:
        return int(await self._redis.hincrby(self._key(unit_id, "attempts"), key, 1))

    async def done(self, unit_id: str, key: str) -> None:
        """Delivered or dead-lettered: out of the queue (its ``seen`` mark stays, so a redelivery is not re-sent)."""
        keys = [self._key(unit_id, "queue"), self._key(unit_id, "items"), self._key(unit_id, "attempts")]
        await self._done(keys=keys, args=[key])

    async def pending(self, unit_id: str) -> int:
        return int(await self._redis.llen(self._key(unit_id, "queue")))

    async def lease(self, unit_id: str, owner: str, ttl_ms: int) -> bool:
        """Take or keep the right to drain ``unit_id``'s queue for ``ttl_ms`` (one courier per connector)."""
        return bool(await self._lease(keys=[self._key(unit_id, "lease")], args=[owner, ttl_ms]))

    async def release(self, unit_id: str, owner: str) -> None:
        key = self._key(unit_id, "lease")
        if (await self._redis.get(key)) in (owner, owner.encode()):
            await self._redis.delete(key)

    async def holders(self, incident_ids: list[str]) -> dict[str, str]:
        """The connected unit holding each incident's newest task, for those that have one."""
        if not incident_ids:
            return {}
        values = await self._redis.mget([self._holder(i) for i in incident_ids])
        return {i: (v.decode() if isinstance(v, bytes) else v) for i, v in zip(incident_ids, values, strict=True)
                if v is not None}  # fmt: skip

    async def hold(self, holders: dict[str, str | None]) -> None:
        """Record who holds each incident now (None: a unit without a connector, so nobody to tell)."""
        if not holders:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for incident_id, unit_id in holders.items():
                if unit_id is None:
                    pipe.delete(self._holder(incident_id))
                else:
                    pipe.set(self._holder(incident_id), unit_id, ex=self._holder_ttl_s)
            await pipe.execute()
