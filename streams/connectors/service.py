"""``cityloop connectors``: one process that forwards tasks and events to the units' own systems.

Its parts: the intake (an aiokafka consumer in group ``<group>-connectors`` on the tasks and feedback topics),
which queues each record for the connected units it concerns in Redis and only then commits its offset; one
courier per connector (streams/connectors/courier.py), each with its own queue, back-off and breaker; one poller
per connector whose system cannot call back (streams/connectors/poller.py: open311), sharing its courier's
breaker, which writes the status it finds to the feedback topic as lifecycle events; a producer for those and for
dead letters; and a small web server with ``/metrics`` and ``/health``. Started and stopped as one asyncio
program (no Faust: it has no stream processing of its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatch.citypack import CityPack
from feedback.store import RedisOrderStore
from streams import lag, metrics
from streams.citypolicy import calendar_of, policy_for
from streams.connectors import open311 as _open311  # noqa: F401 - registers the open311 type
from streams.connectors import webhook as _webhook  # noqa: F401 - registers the webhook type
from streams.connectors.base import TYPES, ConnectorType, Host
from streams.connectors.courier import Courier
from streams.connectors.intake import Message, incidents_of, route
from streams.connectors.outbox import Outbox
from streams.connectors.poller import Poller
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("streams.connectors")


class MissingSecret(ValueError):
    """A connector whose ``secret_env`` (``api_key_env``) is not set in this process's environment."""


def connected_units(pack: CityPack) -> list[Any]:
    return [unit for unit in pack.spec.units if unit.connector is not None]


def secrets_from_env(pack: CityPack, environ: Mapping[str, str] = os.environ) -> dict[str, bytes]:
    """Each connected unit's secret, from the variable its connector names (:class:`MissingSecret` if unset)."""
    found: dict[str, bytes] = {}
    for unit in connected_units(pack):
        name = unit.connector.credential_env
        value = environ.get(name, "")
        if not value.strip():
            what = "api_key" if unit.connector.type == "open311" else "shared secret"
            raise MissingSecret(f"unit {unit.id}'s connector needs its {what} in ${name} "
                                f"(connector.{'api_key_env' if what == 'api_key' else 'secret_env'} in the city pack); "
                                "set it")  # fmt: skip
        found[unit.id] = value.encode("utf-8")
    return found


class _Listener(ConsumerRebalanceListener):
    def __init__(self, offsets: lag.FetchedOffsets) -> None:
        self._offsets = offsets

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._offsets.revoke(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._offsets.assign(assigned)


class ConnectorService:
    def __init__(self, settings: Settings, pack: CityPack, secrets: Mapping[str, bytes], *, web_port: int) -> None:
        self.settings = settings
        self.pack = pack
        self.topics = Topics(settings.topic_prefix)
        self.web_port = web_port
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._secrets = dict(secrets)
        self.sends = {u.id: frozenset(u.connector.send) for u in connected_units(pack)}
        self.couriers: dict[str, Courier] = {}
        self.pollers: dict[str, Poller] = {}
        self.offsets = lag.FetchedOffsets()
        self.committed: dict[Any, int] = {}
        self.ready = False
        self.stopping = asyncio.Event()

    # --------------------------------------------------------------- running

    async def run(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
        outbox = Outbox(client, self.settings.redis_namespace, dedup_ttl_s=self.settings.dedup_ttl_s,
                        holder_ttl_s=self.settings.order_retention_s)  # fmt: skip
        kafka = self.settings.kafka.aiokafka()
        producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=False, linger_ms=0)
        consumer = AIOKafkaConsumer(
            **kafka,
            group_id=f"{self.settings.consumer_group}-connectors",
            client_id=f"{self.settings.consumer_group}-connectors",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.group_session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(self.settings.group_session_timeout_s * 1000 / 6)),
        )
        connectors: list[ConnectorType] = []
        metrics.start_connector_series(self.sends)
        runner = web.AppRunner(self._web_app(client))
        await runner.setup()
        await web.TCPSite(runner, self.settings.web_host, self.web_port).start()
        await producer.start()
        try:
            consumer.subscribe([self.topics.tasks, self.topics.feedback], listener=_Listener(self.offsets))
            await consumer.start()
            lag.install(
                [lag.LagSource(self.offsets, consumer.highwater, lambda: self.committed)],
                self.topics,
                metrics.CONNECTORS_REGISTRY,
            )

            async def write(topic: str, key: str, record: dict[str, Any]) -> None:
                value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                await producer.send_and_wait(topic, value, key=key.encode("utf-8"))

            host = Host(client, self.settings.redis_namespace, self.settings.order_retention_s)
            for unit in connected_units(self.pack):
                connector = TYPES[unit.connector.type](unit, self._secrets[unit.id], host)
                connectors.append(connector)
                courier = Courier(unit.id, connector, unit.connector, outbox, write, self.topics.deadletter, self.owner)
                self.couriers[unit.id] = courier
                every = getattr(unit.connector, "poll_every", None)
                if every is not None:
                    self.pollers[unit.id] = self._poller(unit.id, connector, every.total_seconds(), courier, client,
                                                         write)  # fmt: skip
            tasks = [asyncio.create_task(c.run(self.stopping), name=f"courier-{u}") for u, c in self.couriers.items()]
            tasks += [asyncio.create_task(p.run(self.stopping), name=f"poller-{u}") for u, p in self.pollers.items()]
            self.ready = True
            log.info("ready: %d connectors (%s)", len(self.couriers), ", ".join(self.couriers))
            try:
                await self._intake(consumer, outbox)
            finally:
                self.stopping.set()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.ready = False
            await consumer.stop()
            await producer.stop()
            for connector in connectors:
                await connector.close()
            await runner.cleanup()
            await client.aclose()

    def _poller(self, unit_id: str, connector: ConnectorType, every_s: float, courier: Courier, client: Any,
                write: Any) -> Poller:  # fmt: skip
        """The unit's poller: its courier's breaker (one system, one breaker), the orders as the API reads them."""
        calendar = calendar_of(self.pack)
        orders = RedisOrderStore(client, self.settings.redis_namespace, calendar, event_ttl_s=self.settings.dedup_ttl_s,
                                 retention_s=self.settings.order_retention_s,
                                 sensor_reopen_s=int(self.settings.sensor_reopen_s))  # fmt: skip
        policy = policy_for(self.pack, self.settings, calendar)
        return Poller(unit_id, connector, every_s, courier.breaker, orders, policy, write, self.topics.feedback)

    async def _intake(self, consumer: AIOKafkaConsumer, outbox: Outbox) -> None:
        """Queue what each batch asks for; commit its offsets once Redis holds it (a failure re-reads the batch)."""
        while not self.stopping.is_set():
            try:
                got = await consumer.getmany(timeout_ms=500, max_records=self.settings.batch_size)
            except (KafkaError, OSError) as exc:
                log.warning("fetching from the broker failed (%r); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if not got:
                continue
            messages = [Message(m.topic, m.partition, m.offset, m.key, m.value)
                        for batch in got.values() for m in batch]  # fmt: skip
            for tp, batch in got.items():
                if batch:
                    self.offsets.saw(tp, batch[0].offset)
                    self.offsets.saw(tp, batch[-1].offset)
            try:
                holders = await outbox.holders(incidents_of(m for m in messages if m.topic == self.topics.feedback))
                deliveries, holds = route(messages, tasks_topic=self.topics.tasks, sends=self.sends,
                                          holders=holders, now=time.time())  # fmt: skip
                await outbox.put(deliveries)
                await outbox.hold(holds)
                offsets = {tp: batch[-1].offset + 1 for tp, batch in got.items() if batch}
                await consumer.commit(offsets)
                self.committed.update(offsets)
            except Exception as exc:  # noqa: BLE001 - Redis or a commit failed: read the batch again (queueing is idempotent)
                log.warning("queueing a batch failed (%r); reading it again in 1 s", exc)
                held = consumer.assignment()
                for tp, batch in got.items():
                    if batch and tp in held:  # a partition taken away meanwhile resumes from its commit elsewhere
                        consumer.seek(tp, batch[0].offset)
                await asyncio.sleep(1.0)
                continue
            for unit in {d.unit_id for d in deliveries}:
                self.couriers[unit].wake()

    # ------------------------------------------------------------------- web

    def _web_app(self, client: Any) -> web.Application:
        async def exposition(_: web.Request) -> web.Response:
            body = generate_latest(metrics.CONNECTORS_REGISTRY)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def health(_: web.Request) -> web.Response:
            try:
                redis_ok = bool(await client.ping())
            except Exception:  # noqa: BLE001 - any Redis failure is "not ready", said in the answer
                redis_ok = False
            ready = self.ready and redis_ok
            body = {
                "status": "ready" if ready else "starting" if not self.ready else "degraded",
                "redis": "ok" if redis_ok else "unreachable",
                "city": self.pack.name,
                "connectors": {unit: {"breaker": c.breaker.state.value, "pending": c.pending,
                                      **({"last_poll": self.pollers[unit].last_poll} if unit in self.pollers else {})}
                               for unit, c in self.couriers.items()},
            }  # fmt: skip
            return web.json_response(body, status=200 if ready else 503)

        app = web.Application()
        app.router.add_get("/metrics", exposition)
        app.router.add_get("/health", health)
        return app
