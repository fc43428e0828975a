"""The worker's parts, built in one place by constructor injection: the engine, the lifecycle and the SLA timer.

Everything is handed in; nothing is assigned after construction. The worker
(streams/app.py) calls :func:`worker_parts` with its Redis client and sink;
tests and benchmarks call it with in-memory ones. The API's parts are built
by :meth:`streams.api.context.ApiContext.create`, from the same city reading
(streams/citypolicy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from classifiers import TextClassifier
from classifiers.merge import MergePolicy
from classifiers.store import RedisIncidentIndex
from classifiers.triage import TriagePolicy
from dispatch import CityPack
from dispatch.store import AsyncUnitStore
from feedback.reasons import TaskReasons
from feedback.store import RedisOrderStore
from streams.citypolicy import calendar_of, policy_for
from streams.engine import Engine
from streams.lifecycle import Lifecycle
from streams.pipeline.batch import Sink
from streams.pipeline.emit import Emitter
from streams.pipeline.sensor import Sensor
from streams.settings import Settings
from streams.state import INCIDENT_CALLS, ORDER_CALLS, UNIT_CALLS, DetectorStore, Ledger, Retrying, TriageQueue
from streams.timer import SlaTimer
from streams.topics import Topics


@dataclass(frozen=True)
class WorkerParts:
    engine: Engine  # reports, readings and triage decisions
    lifecycle: Lifecycle  # work orders from feedback events
    timer: SlaTimer  # the deadlines' events


def worker_parts(
    settings: Settings,
    pack: CityPack,
    classifier: TextClassifier,
    triage_policy: TriagePolicy,
    redis_client: Any,
    sink: Sink,
    *,
    sensor: Sensor | None = None,
    **clock: Any,
) -> WorkerParts:
    """Every object the worker's handlers use, sharing one ledger, index, dispatcher and sink."""
    ns = settings.redis_namespace
    topics = Topics(settings.topic_prefix)
    calendar = calendar_of(pack)
    policy = policy_for(pack, settings, calendar)
    ledger = Ledger(redis_client, ns, settings.dedup_ttl_s)
    # the domain packages' stores, each call that is safe to repeat waiting out a Redis outage (streams/state.py)
    incidents = Retrying(RedisIncidentIndex(redis_client, ns, ttl_s=settings.dedup_ttl_s), INCIDENT_CALLS)
    units = Retrying(AsyncUnitStore(redis_client, ns), UNIT_CALLS)
    reasons = TaskReasons(redis_client, ns, retention_s=settings.order_retention_s)
    merge_policy = MergePolicy(default_radius_m=settings.merge_radius_m, default_window_s=settings.merge_window_s)
    engine = Engine(
        pack,
        classifier,
        ledger,
        DetectorStore(redis_client, ns),
        incidents,
        TriageQueue(redis_client, ns, ttl_s=settings.dedup_ttl_s),
        sink,
        topics,
        policy,
        merge_policy=merge_policy,
        triage_policy=triage_policy,
        max_skew=timedelta(seconds=settings.max_clock_skew_s),
        units=units,
        sensor=sensor,
        reasons=reasons,
        **clock,
    )
    orders = Retrying(RedisOrderStore(
        redis_client, ns, calendar, event_ttl_s=settings.dedup_ttl_s, retention_s=settings.order_retention_s,
        sensor_reopen_s=int(settings.sensor_reopen_s),
    ), ORDER_CALLS)  # fmt: skip
    emitter = Emitter(ledger, sink, reasons=reasons, tasks_topic=topics.tasks)
    lifecycle = Lifecycle(pack, engine.dispatcher, policy, orders, incidents, emitter, topics, units=units,
                          unit_loads=engine.unit_loads, merge_policy=merge_policy, **clock)  # fmt: skip
    timer = SlaTimer(pack, policy, orders, emitter, topics, lease=timedelta(seconds=settings.timer_lease_s), **clock)
    return WorkerParts(engine, lifecycle, timer)
