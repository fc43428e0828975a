"""The SLA timer: due deadlines of work orders become events on the feedback stream, each once.

It pops due deadlines from Redis (see :class:`feedback.store.RedisOrderStore`,
with a lease, so a timer that dies mid-round hands them on) and emits
``sla_warning`` (yellow, 75% of a budget), ``escalate`` (red, to the supervisor
unit) and the sensor's ``verify`` after a quiet period, each with an id derived
from order, stage and deadline, through the ledger, so a restart repeats
nothing and loses nothing. The deadlines are marked fired only once the events
are durable (after the commit, exactly once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch import CityPack
from feedback import Policy, WorkOrder
from feedback.orders import parse_timer_member
from feedback.store import RedisOrderStore
from streams import metrics
from streams.citypolicy import supervisor_of
from streams.ids import iso_utc, parse_iso, sensor_actor
from streams.outcomes import event
from streams.pipeline.batch import Emission, Outcome
from streams.pipeline.emit import Emitter
from streams.sinks import delivered
from streams.topics import Topics

log = logging.getLogger(__name__)


class SlaTimer:
    def __init__(
        self,
        pack: CityPack,
        policy: Policy,
        orders: RedisOrderStore,
        emitter: Emitter,
        topics: Topics,
        *,
        lease: timedelta = timedelta(seconds=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pack = pack
        self.policy = policy
        self.orders = orders
        self.emit = emitter
        self.topics = topics
        self.lease = lease
        self.clock = clock

    async def fire_due(self, limit: int = 500) -> int:
        """Emit every deadline that is due (up to ``limit``); returns how many events were sent."""
        now = self.clock()
        now_ms = int(now.timestamp() * 1000)
        lease_ms = int(self.lease.total_seconds() * 1000)
        members = await self.orders.pop_due(now_ms, limit, lease_ms)
        if not members:
            return 0
        parsed = [(m, *parse_timer_member(m)) for m in members]
        orders = await self.orders.load([p[1] for p in parsed])
        out: list[Emission] = []
        for member, incident, stage, level, _due_ms in parsed:
            order = orders.get(incident)
            when = None if order is None else order.timers(self.policy.calendar).get(member)
            if order is None or when is None:
                continue  # the clock stopped or moved since this deadline was set
            record = self._event(order, member, stage, level, when)
            out.append(Emission(f"timer:{member}", [(self.topics.feedback, incident, record)], Outcome.LIFECYCLE))
        sent, _ = await self.emit(out)
        self._observe(sent)
        # marked fired once the events are out: a round whose transaction does not commit is popped again
        await delivered(self.emit.sink, lambda: self.orders.fired(members))
        return sum(len(records) for _, records in sent)

    def _observe(self, sent: list[tuple[Emission, list[Any]]]) -> None:
        acked = self.clock()
        for _, records in sent:
            for _, _, record in records:
                stage = record.get("stage") or "sensor"
                metrics.TIMER_EVENTS.labels(record["type"], stage).inc()
                if record["type"] in ("sla_warning", "escalate"):  # once per order, stage and deadline
                    category = record.get("category") or "-"
                    metrics.SLA_WARNINGS.labels(category, stage, record["level"]).inc()
                    if record["type"] == "escalate":
                        metrics.SLA_BREACHES.labels(category, stage).inc()
                metrics.TIMER_LAG.observe(max(0.0, (acked - parse_iso(record["at"])).total_seconds()))

    def _event(self, order: WorkOrder, member: str, stage: str, level: str, when: datetime) -> dict[str, Any]:
        incident = order.incident_id
        if stage == "sensor":
            assert order.quiet_due is not None
            quiet = int(self.policy.sensor_quiet.total_seconds())
            record = event("verify", incident, sensor_actor(order.sensor_id), when, key=member, task_id=order.task_id,
                           unit_id=order.unit_id, quiet_due=order.quiet_due.isoformat(),
                           reason=f"readings normal for {quiet} s with no re-alarm")  # fmt: skip
        else:
            due = order.clocks[stage].due(self.policy.calendar)
            assert due is not None
            record = event("sla_warning" if level == "yellow" else "escalate", incident, "timer", when, key=member,
                           task_id=order.task_id, unit_id=order.unit_id, stage=stage, level=level,
                           due=due.isoformat(), category=order.category,
                           supervisor=supervisor_of(self.pack, order.unit_id, stage))  # fmt: skip
        record["at"] = iso_utc(when)  # the full precision of the deadline
        return record


async def fire_safely(timer: SlaTimer) -> None:
    """One timer tick; a failure is logged and the next tick tries again (popped deadlines keep their lease)."""
    try:
        while await timer.fire_due() > 0:
            pass
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the timer must keep ticking; leases hand unfinished deadlines on
        log.exception("the SLA timer failed; retrying at the next tick")
