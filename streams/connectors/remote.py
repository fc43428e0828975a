"""What an ``open311`` connector remembers about the requests it made, in Redis (redis.asyncio).

Redis keys, under the deployment's namespace ``<ns>`` and the connected unit ``<unit>``:

==============================================  =======  ==========================================================
key                                             type     holds
==============================================  =======  ==========================================================
``<ns>:connector:<unit>:open311:task:<task>``   string   the system's ``service_request_id`` for the task: a task
                                                         sent again is not posted again
``<ns>:connector:<unit>:open311:posting:<t>``   string   when the first POST for the task went out (unix seconds):
                                                         set before it, gone once its id is known; while it is set,
                                                         an attempt looks the request up before posting again
``<ns>:connector:<unit>:open311:open``          hash     service_request_id -> {task_id, incident_id, service_code,
                                                         seen}: the requests polled; ``seen`` the last action
                                                         written for it
``<ns>:connector:<unit>:open311:incident:<i>``  hash     task_id -> service_request_id, the incident's requests
                                                         (so a cancel or a reassignment can name them)
==============================================  =======  ==========================================================

All but ``open`` expire after the order retention; an entry leaves ``open`` when its request is resolved or
rejected there, or its order left the unit.
"""

from __future__ import annotations

import json
from typing import Any


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RemoteRequests:
    def __init__(self, client: Any, namespace: str, unit_id: str, retention_s: int) -> None:
        self._redis = client
        self._prefix = f"{namespace}:connector:{unit_id}:open311"
        self._ttl = retention_s

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def request_of(self, task_id: str) -> str | None:
        return _text(await self._redis.get(self._key("task", task_id)))

    async def posting_since(self, task_id: str) -> float | None:
        value = _text(await self._redis.get(self._key("posting", task_id)))
        return None if value is None else float(value)

    async def posting(self, task_id: str, now: float) -> None:
        """A POST for the task is about to go out (the first such time is kept)."""
        await self._redis.set(self._key("posting", task_id), repr(now), nx=True, ex=self._ttl)

    async def not_posted(self, task_id: str) -> None:
        """The system refused the POST: it made no request, so a later attempt need not look for one."""
        await self._redis.delete(self._key("posting", task_id))

    async def remember(self, task_id: str, incident_id: str, request_id: str, service_code: str) -> None:
        entry = json.dumps({"task_id": task_id, "incident_id": incident_id, "service_code": service_code, "seen": ""})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("task", task_id), request_id, ex=self._ttl)
            pipe.hset(self._key("incident", incident_id), task_id, request_id)
            pipe.expire(self._key("incident", incident_id), self._ttl)
            pipe.hset(self._key("open"), request_id, entry)
            pipe.delete(self._key("posting", task_id))
            await pipe.execute()

    async def open_requests(self) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(self._key("open"))
        return {_text(k): json.loads(v) for k, v in raw.items()}  # type: ignore[misc]

    async def seen(self, request_id: str, action: str, finished: bool) -> None:
        """``action`` is written for the request; a finished one (resolved, rejected, gone) is polled no more."""
        key = self._key("open")
        if finished:
            await self._redis.hdel(key, request_id)
            return
        raw = await self._redis.hget(key, request_id)
        if raw is not None:
            entry = json.loads(raw)
            entry["seen"] = action
            await self._redis.hset(key, request_id, json.dumps(entry))

    async def withdraw(self, incident_id: str, task_id: str | None) -> list[str]:
        """The task (``None``: every task of the incident) left the unit: its requests still polled are polled no
        more; returns their ids (those the system may still hold open)."""
        key = self._key("incident", incident_id)
        mapping = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        chosen = [r for t, r in mapping.items() if task_id is None or t == task_id]
        withdrawn = [r for r in chosen if r is not None and await self._redis.hdel(self._key("open"), r)]
        if chosen:
            await self._redis.hdel(key, *[t for t, r in mapping.items() if r in chosen])
        return withdrawn
