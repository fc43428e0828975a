"""What every API route needs: the city, the stores, a way to write events, and the clock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from classifiers.store import RedisIncidentIndex
from dispatch import CityPack
from feedback import BusinessCalendar, FeedbackError, LifecycleEvent, Policy, WorkOrder, check
from feedback.reasons import TaskReasons
from feedback.store import RedisOrderStore
from streams import producemeter
from streams.api.store import ApiStore
from streams.citypolicy import calendar_of, policy_for
from streams.ids import report_incident, report_source
from streams.kafkaaccess import KafkaAccess
from streams.settings import Settings
from streams.state import DetectorStore, TriageQueue
from streams.topics import Topics


class EventWriter(Protocol):
    """Writes one record to a topic and returns once the broker has it."""

    async def write(self, topic: str, key: str, record: dict[str, Any]) -> None: ...


class KafkaWriter:
    """:class:`EventWriter` on an aiokafka producer, acknowledged by all in-sync replicas.

    Not idempotent: aiokafka's idempotent producer starts with InitProducerId (v0), which the dev broker (Tansu) does
    not support. A retried send can repeat an event; consumers apply each event id (and report id) once.
    """

    def __init__(self, kafka: KafkaAccess | str, timeout_s: float = 30.0) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            **KafkaAccess.of(kafka).aiokafka(), acks="all", enable_idempotence=False, linger_ms=0,
            request_timeout_ms=int(timeout_s * 1000),
        )  # fmt: skip

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, topic: str, key: str, record: dict[str, Any]) -> None:
        value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        encoded_key = key.encode("utf-8")
        started = time.monotonic()
        try:
            await self._producer.send_and_wait(topic, value, key=encoded_key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            producemeter.API.failed(topic, exc)
            raise
        producemeter.API.acknowledged(topic, 1, len(encoded_key) + len(value), started)


@dataclass
class ApiContext:
    settings: Settings
    pack: CityPack
    calendar: BusinessCalendar
    policy: Policy
    topics: Topics
    orders: RedisOrderStore
    incidents: RedisIncidentIndex
    triage: TriageQueue
    store: ApiStore
    reasons: TaskReasons
    writer: EventWriter
    clock: Callable[[], datetime]
    sensors: DetectorStore  # read only: the newest reading of each sensor the worker heard

    @classmethod
    def build(
        cls,
        settings: Settings,
        pack: CityPack,
        redis_client: Any,
        writer: EventWriter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> ApiContext:
        calendar = calendar_of(pack)
        ns = settings.redis_namespace
        return cls(
            settings=settings,
            pack=pack,
            calendar=calendar,
            policy=policy_for(pack, settings, calendar),
            topics=Topics(settings.topic_prefix),
            orders=RedisOrderStore(
                redis_client,
                ns,
                calendar,
                event_ttl_s=settings.dedup_ttl_s,
                retention_s=settings.order_retention_s,
                sensor_reopen_s=int(settings.sensor_reopen_s),
            ),  # fmt: skip
            incidents=RedisIncidentIndex(redis_client, ns, ttl_s=settings.dedup_ttl_s),
            triage=TriageQueue(redis_client, ns, ttl_s=settings.dedup_ttl_s),
            store=ApiStore(redis_client, ns),
            reasons=TaskReasons(redis_client, ns, retention_s=settings.order_retention_s),
            writer=writer,
            clock=clock,
            sensors=DetectorStore(redis_client, ns),
        )

    @property
    def unit_names(self) -> dict[str, str]:
        return {u.id: u.name for u in self.pack.spec.units}

    async def order(self, incident_id: str) -> WorkOrder | None:
        return (await self.orders.load([incident_id]))[incident_id]

    async def final_order(self, incident_id: str) -> WorkOrder | None:
        """The order, following merges to the one that carries the problem on (at most 8 hops)."""
        order = await self.order(incident_id)
        for _ in range(8):
            if order is None or not order.merged_into:
                return order
            successor = await self.order(order.merged_into)
            if successor is None:
                return order
            order = successor
        return order

    async def incident_of_report(self, report_id: str) -> str | None:
        return await self.incidents.incident_of(report_source(report_id))

    async def in_triage(self, report_id: str) -> bool:
        return await self.triage.get(report_incident(report_id)) is not None

    async def submit(self, order: WorkOrder | None, record: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """Check an event against the table, write it to the feedback stream and wait for the worker.

        Returns ("applied" | "refused" | "accepted", code, reason); the table's
        verdict on the order as read is final before anything is written
        (:class:`FeedbackError` propagates), so a refusal here is a race lost
        to another change.
        """
        incident = record["incident_id"]
        earlier = await self.orders.outcome(incident, record["event_id"])
        if earlier is not None:  # a retry with the same Idempotency-Key: the first answer stands
            return earlier
        check(order, LifecycleEvent.from_record(record), self.policy)
        await self.writer.write(self.topics.feedback, incident, record)
        deadline = asyncio.get_running_loop().time() + self.settings.api_wait_s
        while True:
            outcome = await self.orders.outcome(incident, record["event_id"])
            if outcome is not None:
                return outcome
            if asyncio.get_running_loop().time() >= deadline:
                return ("accepted", None, None)
            await asyncio.sleep(0.05)


__all__ = ["ApiContext", "EventWriter", "FeedbackError", "KafkaWriter", "calendar_of"]
