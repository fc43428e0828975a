"""What a connector type is: a small class that sends one delivery and says how it went (and may poll).

A connector type implements :class:`ConnectorType`: ``send(delivery)`` makes one attempt and returns a
:class:`Result`; retries, back-off, the circuit breaker, dead letters and offsets are the courier's
(streams/connectors/courier.py), the same for every type. ``poll()`` is for a system that cannot call back (an
Open311 server): it returns the :class:`StatusUpdate` s it found, which the service's poller
(streams/connectors/poller.py) writes as lifecycle events and then ``settle`` s, so the type reports each once.
Types register in :data:`TYPES` under the name the pack's ``connector.type`` uses; a factory takes the unit, its
secret and a :class:`Host` (Redis for the type's own state, under the deployment's namespace).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol

from dispatch.citypack import Unit


class Kind(Enum):
    TASK = "task"
    EVENT = "event"


@dataclass(frozen=True)
class Delivery:
    """One record for one connected unit; ``key`` (the task or event id) is its idempotency key."""

    unit_id: str
    kind: Kind
    key: str
    original: str  # the record as it was on the topic (a dead letter keeps these bytes)
    origin: tuple[str, int, int]  # topic, partition, offset of the record (names its dead letter)
    partition_key: str | None  # the record's Kafka key (its incident id)
    enqueued_at: float

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.original)  # type: ignore[no-any-return]

    def payload(self) -> dict[str, Any]:
        """The JSON body a system receives: the contract's record and what it is, the same bytes on every attempt."""
        return {"kind": self.kind.value, "unit_id": self.unit_id, "id": self.key, "record": self.record}


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network error, timeout, 5xx, 429: try again later
    REFUSED = "refused"  # any other 4xx: the system will not take it; dead-letter at once


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    reason_code: str  # bounded: delivered, network, timeout, http_5xx, http_429, http_4xx
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class StatusUpdate:
    """A status a system reported for one of the unit's tasks: where the order should be now.

    ``type`` is the unit action it amounts to (``ack``, ``resolve`` or ``reject``); the poller writes the steps
    the lifecycle table needs before it (a resolve of a dispatched order is ack, start, resolve). ``key`` is stable
    per remote request; an event's id comes from it and the event's type, so each step is one event however often
    it is found or re-derived.
    """

    task_id: str
    type: str
    key: str
    fields: dict[str, str]  # note; or reason_code and reason
    remote_id: str  # the system's id of the request (for logs and metrics)


class PollFailed(Exception):
    """Asking a system failed; ``code`` is a failure reason of the courier's set (network, timeout, http_...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Host:
    """What the process that runs a connector lends it: a Redis client (redis.asyncio) and the namespace."""

    redis: Any
    namespace: str
    retention_s: int = 400 * 86400
    clock: Callable[[], float] = time.time


class ConnectorType(Protocol):
    name: ClassVar[str]

    async def send(self, delivery: Delivery) -> Result: ...

    async def poll(self) -> list[StatusUpdate]: ...

    async def settle(self, update: StatusUpdate, finished: bool = False) -> None: ...

    async def close(self) -> None: ...


#: connector type name -> factory(unit, secret, host); a new type registers here (and its model in
#: dispatch/connectors.py)
TYPES: dict[str, Callable[[Unit, bytes, Host], ConnectorType]] = {}


def register(name: str) -> Callable[[Any], Any]:
    def decorate(factory: Any) -> Any:
        TYPES[name] = factory
        return factory

    return decorate


class HttpClient:
    """One aiohttp session per connector, made on first use (again after a close), with the pack's ``timeout``."""

    spec: Any
    _session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.spec.timeout.total_seconds())
            self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "CityLoop-Connector/1"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
