"""One connector's poller: asks a system that cannot call back for its status, and records it as lifecycle events.

Every ``poll_every`` (the pack's), while the connector's breaker (the one its courier uses: one system, one
breaker) allows: ``poll()`` the type; a failure counts against the breaker like a failed delivery. Each
:class:`StatusUpdate` found is checked against the unit's order as Redis holds it and written to the feedback
topic as the events that bring the order there (streams/connectors/status.py: the same events a status callback
makes, actor ``unit:<unit_id>``, ``by`` ``connector:<unit_id>``, ids from the system's request id and state), then
settled, so the type reports it no more. A crash between the two writes the same events again, with the same
ids, which the worker applies once. Each connector polls in its own task: a slow system holds back no other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from feedback import FeedbackError, Policy
from feedback.store import OrderStore
from streams import metrics
from streams.connectors.base import ConnectorType, PollFailed, StatusUpdate
from streams.connectors.breaker import CircuitBreaker
from streams.connectors.courier import Write
from streams.connectors.status import catch_up
from streams.ids import incident_of_task

log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        unit_id: str,
        connector: ConnectorType,
        every_s: float,
        breaker: CircuitBreaker,
        orders: OrderStore,
        policy: Policy,
        write: Write,
        feedback_topic: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.unit_id = unit_id
        self.connector = connector
        self.every_s = every_s
        self.breaker = breaker
        self._orders = orders
        self._policy = policy
        self._write = write
        self._topic = feedback_topic
        self._clock = clock
        self.last_poll: float | None = None  # when a poll last succeeded (for /health)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll at once, then every ``every_s`` until ``stopping``; Redis or broker failures are logged, never fatal."""
        while not stopping.is_set():
            try:
                await self.step()
            except Exception as exc:  # noqa: BLE001 - Redis or the broker: the next round tries again
                log.warning("connector %s: polling failed (%r); trying again in %.0f s", self.unit_id, exc,
                            self.every_s)  # fmt: skip
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.every_s)
            except TimeoutError:
                pass

    async def step(self) -> int:
        """One round: poll if the breaker allows, record what was found; returns how many updates were found."""
        now = self._clock()
        if not self.breaker.allows(now):
            return 0
        started = time.perf_counter()
        try:
            updates = await self.connector.poll()
        except PollFailed as exc:
            self.breaker.failed(self._clock())
            metrics.CONNECTOR_POLLS.labels(self.unit_id, exc.code).inc()
            log.warning("connector %s: poll failed (%s)%s", self.unit_id, exc.reason,
                        "; breaker open" if self.breaker.is_open else "")  # fmt: skip
            return 0
        finally:
            metrics.CONNECTOR_POLL_SECONDS.labels(self.unit_id).observe(time.perf_counter() - started)
        self.breaker.succeeded()
        self.last_poll = self._clock()
        metrics.CONNECTOR_POLLS.labels(self.unit_id, "ok").inc()
        for update in updates:
            outcome = await self.record(update)
            metrics.CONNECTOR_UPDATES.labels(self.unit_id, outcome).inc()
        return len(updates)

    async def record(self, update: StatusUpdate) -> str:
        """Write the events ``update`` makes on the unit's order; settle it. Returns the outcome (metrics)."""
        incident = incident_of_task(update.task_id)
        order = None if incident is None else (await self._orders.load([incident]))[incident]
        if order is None or order.unit_id != self.unit_id or order.task_id != update.task_id:
            log.info("connector %s: %s says %s, but task %s is no longer the unit's; not recorded", self.unit_id,
                     update.remote_id, update.type, update.task_id)  # fmt: skip
            await self.connector.settle(update, finished=True)
            return "stale"
        at = datetime.fromtimestamp(self._clock(), UTC)
        try:
            records = catch_up(self.unit_id, order, update.type, update.key, update.fields, at, self._policy)
        except FeedbackError as exc:
            log.warning("connector %s: %s says %s, which order %s (%s) cannot take: %s", self.unit_id,
                        update.remote_id, update.type, order.incident_id, order.state.value, exc)  # fmt: skip
            await self.connector.settle(update, finished=True)
            return "refused"
        for record in records:  # one key (the incident): one partition, applied in this order
            await self._write(self._topic, order.incident_id, record)
        await self.connector.settle(update)
        if records:
            log.info("connector %s: %s says %s; wrote %s for %s", self.unit_id, update.remote_id, update.type,
                     ", ".join(r["type"] for r in records), order.incident_id)  # fmt: skip
        return "written" if records else "current"
