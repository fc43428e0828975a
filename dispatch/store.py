"""Dispatch state in Redis: open tasks per unit (the loads) and field teams' positions.

The only module of ``dispatch`` that talks to Redis; the client is passed in (a
``redis.Redis`` or a ``redis.asyncio.Redis``), so the pure dispatcher stays pure:
read ``loads()`` and ``positions()``, hand them to ``Dispatcher.assign_batch``,
then ``open_task`` what it assigned.

A unit's load is the size of a set of task ids, so counting a task is idempotent:
a redelivered task is not counted twice, and closing it twice does not go below
zero. Keys share the hash tag ``{dispatch}`` so the move script also runs on a
Redis Cluster. Key layout, under the deployment's namespace ``ns``:

* ``ns:{dispatch}:open:<unit_id>``: set of open task ids assigned to the unit
* ``ns:{dispatch}:positions``: GEO set of field teams' last known positions
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from dispatch.capacity import Position

# Move a task id from one unit's set to another's; counts it at the target even if the
# source never had it (a move replayed after a crash, or a task opened before counting).
_MOVE = """
if redis.call('SMOVE', KEYS[1], KEYS[2], ARGV[1]) == 1 then return 1 end
return redis.call('SADD', KEYS[2], ARGV[1])
"""

# Open (+) or close (-) many tasks in order, in one call: KEYS[i] is the unit's set, ARGV[2i-1] the op, ARGV[2i] the
# task id. Answers nothing useful; each step is idempotent (a task counts once per unit).
_HOLDS = """
for i = 1, #KEYS do
  if ARGV[2 * i - 1] == '+' then
    redis.call('SADD', KEYS[i], ARGV[2 * i])
  else
    redis.call('SREM', KEYS[i], ARGV[2 * i])
  end
end
return #KEYS
"""

# KEYS = units' sets; answers the size of each.
_LOADS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('SCARD', KEYS[i]) end
return out
"""


class RedisClient(Protocol):
    """The part of redis-py's client API the store uses (sync or asyncio)."""

    def register_script(self, script: str) -> Any: ...
    def pipeline(self, transaction: bool = True) -> Any: ...
    def sadd(self, name: str, *values: Any) -> Any: ...
    def srem(self, name: str, *values: Any) -> Any: ...
    def geoadd(self, name: str, values: Any) -> Any: ...
    def zrem(self, name: str, *values: Any) -> Any: ...


class _Keys:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def open(self, unit_id: str) -> str:
        return f"{self.namespace}:{{dispatch}}:open:{unit_id}"

    @property
    def positions(self) -> str:
        return f"{self.namespace}:{{dispatch}}:positions"


def _positions(unit_ids: list[str], answer: list[Any]) -> dict[str, Position]:
    return {
        unit_id: (float(coords[1]), float(coords[0]))
        for unit_id, coords in zip(unit_ids, answer, strict=True)
        if coords is not None
    }


class UnitStore:
    """Loads and positions through a synchronous redis client."""

    def __init__(self, client: RedisClient, namespace: str) -> None:
        self.client = client
        self.keys = _Keys(namespace)
        self._move = client.register_script(_MOVE)

    def open_task(self, unit_id: str, task_id: str) -> bool:
        """Count an open task against a unit; False if it was already counted."""
        return bool(self.client.sadd(self.keys.open(unit_id), task_id))

    def close_task(self, unit_id: str, task_id: str) -> bool:
        """The task is done (or withdrawn); False if it was not counted."""
        return bool(self.client.srem(self.keys.open(unit_id), task_id))

    def move_task(self, task_id: str, from_unit: str, to_unit: str) -> bool:
        """Re-routing: the task leaves one unit's load for another's, atomically."""
        return bool(self._move(keys=[self.keys.open(from_unit), self.keys.open(to_unit)], args=[task_id]))

    def loads(self, unit_ids: Iterable[str]) -> dict[str, int]:
        units = list(unit_ids)
        pipe = self.client.pipeline(transaction=False)
        for unit_id in units:
            pipe.scard(self.keys.open(unit_id))
        return {unit_id: int(n) for unit_id, n in zip(units, pipe.execute(), strict=True)}

    def set_position(self, unit_id: str, lat: float, lon: float) -> None:
        self.client.geoadd(self.keys.positions, (lon, lat, unit_id))

    def forget_position(self, unit_id: str) -> None:
        self.client.zrem(self.keys.positions, unit_id)

    def positions(self, unit_ids: Iterable[str]) -> dict[str, Position]:
        """(lat, lon) of each unit with a known position."""
        units = list(unit_ids)
        if not units:
            return {}
        pipe = self.client.pipeline(transaction=False)
        pipe.geopos(self.keys.positions, *units)
        return _positions(units, pipe.execute()[0])


class AsyncUnitStore:
    """The same, through ``redis.asyncio``, for the stream worker."""

    def __init__(self, client: RedisClient, namespace: str) -> None:
        self.client = client
        self.keys = _Keys(namespace)
        self._move = client.register_script(_MOVE)
        self._holds = client.register_script(_HOLDS)
        self._loads = client.register_script(_LOADS)

    async def open_task(self, unit_id: str, task_id: str) -> bool:
        return bool(await self.client.sadd(self.keys.open(unit_id), task_id))

    async def close_task(self, unit_id: str, task_id: str) -> bool:
        return bool(await self.client.srem(self.keys.open(unit_id), task_id))

    async def open_tasks(self, holds: Iterable[tuple[str, str]]) -> None:
        """Count many (unit, task) at once; each task counts once per unit."""
        await self.apply_holds([("+", unit_id, task_id) for unit_id, task_id in holds])

    async def apply_holds(self, steps: Iterable[tuple[str, str, str]]) -> None:
        """Open (``+``) or close (``-``) each (unit, task) in order, in one round trip."""
        keys: list[str] = []
        args: list[str] = []
        for op, unit_id, task_id in steps:
            keys.append(self.keys.open(unit_id))
            args += [op, task_id]
        if keys:
            await self._holds(keys=keys, args=args)

    async def move_task(self, task_id: str, from_unit: str, to_unit: str) -> bool:
        return bool(await self._move(keys=[self.keys.open(from_unit), self.keys.open(to_unit)], args=[task_id]))

    async def loads(self, unit_ids: Iterable[str]) -> dict[str, int]:
        units = list(unit_ids)
        if not units:
            return {}
        counts = await self._loads(keys=[self.keys.open(unit_id) for unit_id in units], args=[])
        return {unit_id: int(n) for unit_id, n in zip(units, counts, strict=True)}

    async def set_position(self, unit_id: str, lat: float, lon: float) -> None:
        await self.client.geoadd(self.keys.positions, (lon, lat, unit_id))

    async def forget_position(self, unit_id: str) -> None:
        await self.client.zrem(self.keys.positions, unit_id)

    async def positions(self, unit_ids: Iterable[str]) -> dict[str, Position]:
        units = list(unit_ids)
        if not units:
            return {}
        pipe = self.client.pipeline(transaction=False)
        pipe.geopos(self.keys.positions, *units)
        return _positions(units, (await pipe.execute())[0])
