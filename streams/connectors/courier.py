"""One connector's courier: takes its queue in order, sends, backs off, trips its breaker, dead-letters.

Per delivery (the head of the unit's queue, streams/connectors/outbox.py):

* delivered (2xx): out of the queue;
* worth another attempt (network, timeout, 5xx, 429): the attempt is counted (in Redis, so a restart goes on
  counting), the next one waits ``retry.initial * 2^(n-1)`` capped at ``retry.max``; after ``retry.max_attempts``
  failed attempts it is dead-lettered with the last error as the reason (``delivery_failed``);
* refused (another 4xx): dead-lettered at once (``delivery_refused``), the system said no and will say it again.

A delivery leaves the queue only after the system took it or its dead letter is on the broker, so a crash in
between sends it again, with the same ``Idempotency-Key``. Deliveries of one unit go out in order (a task before
its events); another unit's courier never waits for this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from dispatch.connectors import Open311Connector, WebhookConnector
from streams import metrics
from streams.connectors.base import ConnectorType, Delivery, Kind, Result, Verdict
from streams.connectors.breaker import CircuitBreaker, backoff_s
from streams.connectors.outbox import Outbox
from streams.ids import connector_dead_letter_id
from streams.logs import bound, record_position
from streams.outcomes import Envelope, dead_letter

log = logging.getLogger(__name__)

Write = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (topic, key, record), returns once the broker has it
STAGE = "connector"
LEASE_MS = 15_000


def delivery_ids(delivery: Delivery) -> Any:
    """Bind a delivery's ids for its log lines: its task (or event), unit, incident, and the record it came from."""
    own = {"task_id": delivery.key} if delivery.kind is Kind.TASK else {"event_id": delivery.key}
    return bound(unit_id=delivery.unit_id, incident_id=delivery.partition_key, record=record_position(*delivery.origin),
                 **own)  # fmt: skip


def connector_dead_letter(delivery: Delivery, code: str, reason: str, now: datetime) -> dict[str, Any]:
    """The dead letter of one delivery: the contract's shape, stage ``connector``, an id naming the unit too."""
    topic, partition, offset = delivery.origin
    key = None if delivery.partition_key is None else delivery.partition_key.encode("utf-8")
    envelope = Envelope(delivery.original.encode("utf-8"), key, topic, partition, offset, None)
    record = dead_letter(STAGE, code, reason, envelope, now)
    record["deadletter_id"] = connector_dead_letter_id(topic, partition, offset, delivery.unit_id)
    record["unit_id"] = delivery.unit_id
    record["delivery_key"] = delivery.key
    return record


class Courier:
    def __init__(
        self,
        unit_id: str,
        connector: ConnectorType,
        spec: WebhookConnector | Open311Connector,
        outbox: Outbox,
        write: Write,
        deadletter_topic: str,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.unit_id = unit_id
        self.connector = connector
        self.spec = spec
        self.breaker = CircuitBreaker(spec.breaker.failures, spec.breaker.cooldown.total_seconds())
        self._outbox = outbox
        self._write = write
        self._topic = deadletter_topic
        self._owner = owner
        self._clock = clock
        self._wake = asyncio.Event()
        self._not_before: dict[str, float] = {}  # delivery key -> earliest next attempt (back-off)
        self.pending = 0
        metrics.CONNECTOR_OPEN.labels(unit_id).set(0)

    def wake(self) -> None:
        """New deliveries are queued: look now rather than at the next poll."""
        self._wake.set()

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set; a Redis or broker outage is logged and waited out, never fatal."""
        while not stopping.is_set():
            try:
                pause = await self.step()
            except Exception as exc:  # noqa: BLE001 - Redis or the broker: wait and try again, the queue keeps it
                log.warning("connector %s: %r; trying again in 1 s", self.unit_id, exc)
                pause = 1.0
            if pause > 0:
                await self._idle(pause)
        await self._outbox.release(self.unit_id, self._owner)

    async def step(self) -> float:
        """One look at the queue: send the head if it is due; returns how long to wait before the next look."""
        if not await self._outbox.lease(self.unit_id, self._owner, LEASE_MS):
            return LEASE_MS / 3000  # another process's courier drains this queue
        head = await self._outbox.head(self.unit_id)
        self.pending = await self._outbox.pending(self.unit_id)
        now = self._clock()
        metrics.CONNECTOR_PENDING.labels(self.unit_id).set(self.pending)
        metrics.CONNECTOR_LAG.labels(self.unit_id).set(0 if head is None else max(0.0, now - head[0].enqueued_at))
        metrics.CONNECTOR_OPEN.labels(self.unit_id).set(1 if self.breaker.is_open else 0)
        if head is None:
            return 1.0
        delivery, attempts = head
        wait = max(self.breaker.wait_s(now), self._not_before.get(delivery.key, 0.0) - now)
        if wait > 0 or not self.breaker.allows(now):
            return min(max(wait, 0.05), 1.0)
        with delivery_ids(delivery):  # the lines about this attempt carry its task or event, unit and incident
            result = await self.connector.send(delivery)
            metrics.CONNECTOR_SECONDS.labels(self.unit_id).observe(result.seconds)
            await self._settle(delivery, attempts, result)
        return 0.0

    async def _settle(self, delivery: Delivery, attempts: int, result: Result) -> None:
        now = self._clock()
        if result.verdict is Verdict.DELIVERED:
            self.breaker.succeeded()
            await self._outbox.done(self.unit_id, delivery.key)
            self._not_before.pop(delivery.key, None)
            metrics.CONNECTOR_SENT.labels(self.unit_id, delivery.kind.value).inc()
            return
        metrics.CONNECTOR_FAILED.labels(self.unit_id, result.reason_code).inc()
        if result.verdict is Verdict.REFUSED:
            self.breaker.succeeded()  # the system answered: it is up, this record is what it refuses
            said = "system refused it" if result.reason_code.startswith("http") else "connector cannot send it"
            reason = f"{self.unit_id}'s {said}: {result.reason}"
            await self._dead_letter(delivery, "delivery_refused", reason)
            return
        self.breaker.failed(now)
        attempts = await self._outbox.failed(self.unit_id, delivery.key)
        if attempts >= self.spec.retry.max_attempts:
            reason = f"{attempts} attempts to send to {self.unit_id}'s system failed; the last: {result.reason}"
            await self._dead_letter(delivery, "delivery_failed", reason)
            return
        delay = backoff_s(attempts, self.spec.retry.initial.total_seconds(), self.spec.retry.max.total_seconds())
        self._not_before[delivery.key] = now + delay
        log.info("connector %s: %s %s not delivered (%s); attempt %d in %.1f s%s", self.unit_id,
                 delivery.kind.value, delivery.key, result.reason, attempts + 1, delay,
                 "; breaker open" if self.breaker.is_open else "")  # fmt: skip

    async def _dead_letter(self, delivery: Delivery, code: str, reason: str) -> None:
        record = connector_dead_letter(delivery, code, reason, datetime.fromtimestamp(self._clock(), UTC))
        await self._write(self._topic, record["deadletter_id"], record)  # on the broker before it leaves the queue
        await self._outbox.done(self.unit_id, delivery.key)
        self._not_before.pop(delivery.key, None)
        metrics.CONNECTOR_DEAD_LETTERS.labels(self.unit_id, code).inc()
        metrics.CONNECTOR_STAGE_DEAD_LETTERS.labels(STAGE, code).inc()
        log.warning("connector %s: %s %s dead-lettered (%s): %s", self.unit_id, delivery.kind.value, delivery.key,
                    code, reason)  # fmt: skip
