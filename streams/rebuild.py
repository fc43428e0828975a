"""Rebuilding Redis's working state from the Kafka log: read the topics from the beginning, fold, write.

Used by the worker when it finds Redis without its state epoch (streams/epoch.py) and by ``cityloop state rebuild``.
The log is read with a plain kafka-python consumer in no group (assigned partitions, from the beginning, to the end
offsets taken at the start; on the dev broker, whose ListOffsets answer can be short, on until a poll finds nothing
more); streams/logstate.py folds it; this module writes the result. Every write fills in only what is missing, so a
rebuild over a Redis that kept some state (or a second rebuild) changes nothing that is there:

* the merge index (classifiers/store.py's keys): an incident's hash only if it has none, its sources added, an
  open one into its family's GEO index, each source's decision (``ns:src:<source>``) and each family's watermark
  only if absent;
* the work orders through :class:`feedback.store.RedisOrderStore` itself (its save writes the units' order lists,
  SLA lights, timers, the board and the reporters' feed with each order), orders that exist left alone;
* the units' open tasks (dispatch's capacity counts), the reporters who joined each order, and the tasks' reasons;
* the emission ledger of each report and alarm whose outcome is in the log, marked sent (a redelivered one is skipped,
  as before the loss).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from classifiers.merge import MergePolicy
from dispatch import CityPack
from dispatch.store import AsyncUnitStore
from feedback.reasons import TaskReasons
from feedback.store import Change, RedisOrderStore
from streams.citypolicy import calendar_of, policy_for
from streams.epoch import StateGuard, install_outage_check
from streams.errors import Unreachable
from streams.kafkaaccess import KafkaAccess
from streams.logstate import IndexEntry, LogState
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger(__name__)

CHUNK = 500  # entries per Redis call: big enough to be quick, small enough not to block Redis for long
GRACE_S = 3600.0  # as classifiers.store.RedisIncidentIndex's default grace for late reports
Progress = Callable[[str], None]
SENT_OUTCOME = b'{"records":[]}'  # a ledger entry marked sent: its records are in the log, none is sent again

# ARGV[1] = namespace, ARGV[2] = TTL, ARGV[3] = JSON array of [id, lon, lat, cat, fam, first, last, tok, n, org,
# conf, by, open, closed, [sources]]. Answers how many incidents were written (those without a hash).
_RESTORE_INCIDENTS = """
local ns, ttl, written = ARGV[1], tonumber(ARGV[2]), 0
for _, E in ipairs(cjson.decode(ARGV[3])) do
  local key = ns .. ':inc:' .. E[1]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'lat', E[3], 'lon', E[2], 'cat', E[4], 'fam', E[5], 'first', E[6], 'last', E[7],
      'tok', E[8], 'n', E[9], 'org', E[10], 'conf', E[11], 'by', E[12])
    if E[14] == '1' then redis.call('HSET', key, 'closed', '1') end
    redis.call('EXPIRE', key, ttl)
    if E[13] == '1' then
      redis.call('GEOADD', ns .. ':open:' .. E[5], E[2], E[3], E[1])
      redis.call('ZADD', ns .. ':openlast:' .. E[5], E[7], E[1])
    end
    written = written + 1
  end
  for _, source in ipairs(E[15]) do redis.call('SADD', key .. ':src', source) end
  if #E[15] > 0 then redis.call('EXPIRE', key .. ':src', ttl) end
end
return written
"""


@dataclass(frozen=True)
class Summary:
    """What a rebuild read and restored."""

    records: int  # read from the three topics
    incidents: int  # in the merge index, open to repeats
    orders: int  # work orders written (open and finished)
    open_orders: int
    seconds: float

    def line(self) -> str:
        return (f"rebuilt the state from the log: {self.records} records read, {self.incidents} open incidents and "
                f"{self.orders} work orders ({self.open_orders} open) restored in {self.seconds:.1f} s")  # fmt: skip


def read_log(
    access: KafkaAccess, names: Sequence[str], add: Callable[[str, bytes | None], None], *,
    progress: Progress | None = None, within: float = 30.0, every_s: float = 2.0,
) -> int:  # fmt: skip
    """Hand every record of ``names`` to ``add`` (topic, value), partition by partition in order; return how many.

    Reads to the end offsets taken at the start, then on until a poll brings nothing: the dev broker's end offsets
    can be short (docs/STACK.md), and while the state is lost no worker writes, so the end is near. A topic that
    does not exist holds nothing to rebuild from. :class:`Unreachable` when the broker does not answer, or when the
    end is not reached and nothing arrives for ``within`` seconds.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            **access.kafka_python(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed", max_poll_records=5000, bootstrap_timeout_ms=int(within * 1000),
        )  # fmt: skip
    except KafkaError as exc:
        raise Unreachable(f"no Kafka broker answers at {access.describe()} ({type(exc).__name__}); the state "
                          "is rebuilt from the log, so the broker must be up") from None  # fmt: skip
    try:
        existing = consumer.topics()
        tps = [TopicPartition(name, p) for name in names if name in existing
               for p in sorted(consumer.partitions_for_topic(name) or ())]  # fmt: skip
        if not tps:
            return 0
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        expected = sum(ends.values()) - sum(consumer.beginning_offsets(tps).values())
        read, said_at, heard_at = 0, time.monotonic(), time.monotonic()
        while True:
            got = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, messages in got.items():
                for message in messages:
                    add(tp.topic, message.value)
                read += len(messages)
            now = time.monotonic()
            if got:
                heard_at = now
            if progress is not None and now - said_at >= every_s:
                progress(f"read {read} of about {expected} records")
                said_at = now
            at_end = all(consumer.position(tp) >= ends[tp] for tp in tps)
            if not got and at_end:
                return read
            if not got and now - heard_at > within:
                raise Unreachable(f"reading the log stopped at {read} of about {expected} records: nothing arrived "
                                  f"for {within:g} s from {access.describe()}")  # fmt: skip
    finally:
        # closing cancels a metadata refresh in flight, which kafka-python logs as an ERROR: not one worth a line
        client_log = logging.getLogger("kafka")
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)
        try:
            consumer.close()
        finally:
            client_log.setLevel(level)


async def restore(
    client: Any, namespace: str, state: LogState, merge_policy: MergePolicy, orders: RedisOrderStore, *,
    ttl_s: int, retention_s: int, progress: Progress | None = None,
) -> tuple[int, int]:  # fmt: skip
    """Write what ``state`` says into Redis, filling in only what is missing; (open incidents, orders written)."""
    entries, watermarks = state.index(merge_policy, GRACE_S)
    script = client.register_script(_RESTORE_INCIDENTS)
    for start in range(0, len(entries), CHUNK):
        chunk = [_entry_args(e) for e in entries[start : start + CHUNK]]
        await script(keys=[], args=[namespace, ttl_s, json.dumps(chunk)])
    flags = list(state.opened_flags().items())
    for start in range(0, len(flags), CHUNK * 4):
        pipe = client.pipeline(transaction=False)
        for source, value in flags[start : start + CHUNK * 4]:
            pipe.set(f"{namespace}:src:{source}", value, nx=True, ex=ttl_s)
        await pipe.execute()
    # the ledger: a report or alarm whose outcome is in the log was sent; redelivered, it is skipped as before
    keys = state.ledger_keys()
    for start in range(0, len(keys), CHUNK * 2):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + CHUNK * 2]:
            pipe.set(f"{namespace}:ledger:{key}", SENT_OUTCOME, nx=True, ex=ttl_s)
            pipe.set(f"{namespace}:ledger:{key}:sent", "1", nx=True, ex=ttl_s)
        await pipe.execute()
    if watermarks:
        pipe = client.pipeline(transaction=False)
        for family, mark in watermarks.items():
            pipe.set(f"{namespace}:wm:{family}", repr(mark), nx=True, ex=ttl_s)
        await pipe.execute()
    if progress is not None:
        progress(f"merge index: {len(entries)} incidents, {len(flags)} sources")
    written = 0
    ids = list(state.orders)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        there = await orders.load(chunk)
        changes = [Change(None, state.orders[i], tuple(state.applied.get(i, ()))) for i in chunk if there[i] is None]
        await orders.save(changes)
        written += len(changes)
    await AsyncUnitStore(client, namespace).open_tasks(state.holds())
    open_ids = {o.incident_id for o in state.open_orders()}
    joined = {i: sources for i, sources in state.joined.items() if i in open_ids}
    if joined:
        await orders.record_reports(joined)
    tasks = state.open_tasks()
    reasons = TaskReasons(client, namespace, retention_s=retention_s)
    for start in range(0, len(tasks), CHUNK):
        await reasons.save([(t, orjson.dumps(t)) for t in tasks[start : start + CHUNK]])
    return sum(1 for e in entries if e.open), written


def _entry_args(e: IndexEntry) -> list[Any]:
    return [e.incident_id, repr(e.lon), repr(e.lat), e.category, e.family, repr(e.first), repr(e.last), e.tokens,
            str(e.count), e.origin, repr(e.confidence), e.classified_by, "1" if e.open else "0",
            "1" if e.closed else "0", list(e.sources)]  # fmt: skip


async def rebuild_state(
    settings: Settings, pack: CityPack, client: Any, *, progress: Progress | None = None
) -> Summary:
    """Read the incidents, tasks and feedback topics from the beginning and restore Redis's state from them."""
    started = time.monotonic()
    topics = Topics(settings.topic_prefix)
    state = LogState(topics, policy_for(pack, settings, calendar_of(pack)))
    names = [topics.incidents, topics.tasks, topics.feedback]
    read = await asyncio.to_thread(read_log, settings.kafka, names, state.add, progress=progress,
                                   within=max(settings.connect_timeout_s, 10.0))  # fmt: skip
    if progress is not None:
        progress(f"read {read} records: {len(state.incidents)} incidents, {len(state.orders)} work orders")
    incidents, written = await restore_state(settings, pack, client, state, progress=progress)
    return Summary(read, incidents, written, len(state.open_orders()), time.monotonic() - started)


async def restore_state(
    settings: Settings, pack: CityPack, client: Any, state: LogState, *, progress: Progress | None = None
) -> tuple[int, int]:
    """:func:`restore` with the stores and policies the worker uses for ``settings`` and ``pack``."""
    orders = RedisOrderStore(
        client,
        settings.redis_namespace,
        calendar_of(pack),
        event_ttl_s=settings.dedup_ttl_s,
        retention_s=settings.order_retention_s,
        sensor_reopen_s=int(settings.sensor_reopen_s),
    )
    merge_policy = MergePolicy(default_radius_m=settings.merge_radius_m, default_window_s=settings.merge_window_s)
    return await restore(client, settings.redis_namespace, state, merge_policy, orders, ttl_s=settings.dedup_ttl_s,
                         retention_s=settings.order_retention_s, progress=progress)  # fmt: skip


def worker_guard(
    settings: Settings, pack: CityPack, client: Any, *, progress: Progress | None = None, install: bool = True
) -> StateGuard:
    """The state guard that rebuilds with this module; a worker's is installed as the Redis retries' outage check."""

    def logged(line: str) -> None:  # the worker's own lines: its summary says what was restored, readiness says why
        log.debug("rebuild: %s", line)

    async def rebuild() -> Summary:
        return await rebuild_state(settings, pack, client, progress=progress or logged)

    guard = StateGuard(client, settings.redis_namespace, rebuild)
    if install:
        install_outage_check(guard)
    return guard
