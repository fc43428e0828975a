"""The worker: a Faust app that runs the batch consumer, the SLA timer and the web views (/metrics, /livez, /readyz).

The process around it (logging, signals, the bounded stop) is streams/workerprocess.py.

Faust runs the worker process (start-up and shutdown, signals, timers, the web
server, its producer). The three input topics are read by one batch consumer
(streams/ingest.py) rather than by Faust agents, whose per-event path cost more
than the work itself. Handlers are short: hand a batch of envelopes to the
engine or the lifecycle, and retry the whole batch (uncommitted) if the broker
or Redis fails underneath. Per-record problems never reach this level: the
engine dead-letters them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import faust
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from mode import Service
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from classifiers import TextClassifier, seed_classifier
from classifiers.triage import TriagePolicy
from dispatch import CityPack
from feedback.orders import STAGES
from streams import lag, lagprobe, logs, metrics, modelwatch, observability, transport, workerhealth
from streams.engine import BatchResult, Engine
from streams.epoch import StateLost
from streams.ingest import BatchIngest
from streams.outcomes import Envelope
from streams.rebuild import worker_guard
from streams.records import REASON_CODES
from streams.settings import Settings
from streams.sinks import CommitAbandoned, FaustSink, TransactionalSink
from streams.timer import fire_safely
from streams.topics import Topics
from streams.wiring import worker_parts

log = logging.getLogger(__name__)


# StateLost: Redis came back empty; the batch waits for the rebuild from the log (streams/epoch.py), then runs again
TRANSIENT = (ConnectionError, TimeoutError, OSError, RedisConnectionError, RedisTimeoutError, KafkaError, StateLost)
# Redis answers that say "not now" rather than "not this record": a failover's read-only replica, memory full, a long
# script running, a cluster slot moving
REDIS_NOT_NOW = (ReadOnlyError, OutOfMemoryError, TryAgainError, ClusterDownError)
REDIS_NOT_NOW_PREFIXES = ("BUSY", "LOADING", "MASTERDOWN")


def transient(exc: BaseException) -> bool:
    """An unavailable broker or Redis (waited out), as opposed to a failure that a record causes."""
    if isinstance(exc, TRANSIENT + REDIS_NOT_NOW):
        return True
    return isinstance(exc, RedisResponseError) and str(exc).startswith(REDIS_NOT_NOW_PREFIXES)


async def _process(stream_name: str, handle: Any, engine: Engine, envelopes: list[Envelope]) -> BatchResult:
    """Process a batch; events stay unacknowledged until it is done.

    An unavailable broker or Redis is waited out (retry with back-off, forever:
    nothing is dropped, the stream catches up). Any other failure is a record's
    doing: the batch is split at once, record by record, and the records that
    fail alone go to the dead-letter topic with the error, so one bad record
    never stalls a partition (nor costs its batch a second try). Retrying a
    record after the batch failed is safe: every stage answers a record it has
    seen as it did the first time (the ledger, the merge index's per-source
    decisions), and an exactly-once unit's output is rolled back.
    """
    delay = 0.1
    while True:
        mark = _checkpoint(engine.sink)
        try:
            return await handle(envelopes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - waited out or isolated below, never dropped
            _rollback(engine.sink, mark)
            if not transient(exc):
                log.exception("%s batch of %d failed; finding the record that fails alone", stream_name,
                              len(envelopes))  # fmt: skip
                return await _one_by_one(stream_name, handle, engine, envelopes)
            if isinstance(exc, StateLost):  # streams/epoch.py: the handler waits for the rebuild when retried
                log.warning("%s batch of %d stopped: %s; retried once the state is rebuilt", stream_name,
                            len(envelopes), exc)  # fmt: skip
            else:
                log.exception("%s batch of %d: broker or Redis unavailable; retrying in %.1fs", stream_name,
                              len(envelopes), delay)  # fmt: skip
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


def _checkpoint(sink: Any) -> Any:
    """Where an exactly-once unit's output stands (streams/sinks.py); None for a sink that sends at once."""
    return sink.checkpoint() if hasattr(sink, "checkpoint") else None


def _rollback(sink: Any, mark: Any) -> None:
    if mark is not None:  # the failed attempt's output is forgotten; the retry makes it again from the ledger
        sink.rollback(mark)


async def _one_by_one(stream_name: str, handle: Any, engine: Engine, envelopes: list[Envelope]) -> BatchResult:
    """Each record alone; one that fails alone is dead-lettered with the error; an outage meanwhile is waited out."""
    total = BatchResult(consumed=len(envelopes))
    for envelope in envelopes:
        with logs.bound(record=logs.record_position(envelope.topic, envelope.partition, envelope.offset)):
            one = await _alone(stream_name, handle, engine, envelope)
        total.dead_lettered += one.dead_lettered
        total.tasks += one.tasks
    return total


async def _alone(stream_name: str, handle: Any, engine: Engine, envelope: Envelope) -> BatchResult:
    """One record: its result, or its dead letter if it fails alone; an outage meanwhile is waited out."""
    delay = 0.1
    while True:
        mark = _checkpoint(engine.sink)
        try:
            return await handle([envelope])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - this record is the culprit: keep it with the reason
            _rollback(engine.sink, mark)
            if not transient(exc):
                log.exception("%s record %s:%s@%s failed alone; dead-lettering it", stream_name, envelope.topic,
                              envelope.partition, envelope.offset)  # fmt: skip
                why = f"{type(exc).__name__}: {exc}"
                return await engine.reject([envelope], "internal", "processing_error", why)
            # not the record's doing: the same record again once the outage is over
            log.exception("%s record %s:%s@%s: broker or Redis unavailable; retrying in %.1fs", stream_name,
                          envelope.topic, envelope.partition, envelope.offset, delay)  # fmt: skip
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


class TrainingInBackground:
    """The seed model, trained on a thread while the worker starts (about 1.7 s, as long as a group join on Tansu).

    Everything before the first batch (imports, Faust, the ingest group join)
    goes on meanwhile; the report and feedback handlers await :meth:`ready`
    (off the event loop, so heartbeats go on) before their first batch. If the
    training fails, the worker stops: a worker that cannot classify text
    would dead-letter every free-text report while saying it is ready.
    """

    def __init__(self, train: Callable[[], TextClassifier]) -> None:
        self._model: TextClassifier | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._train, args=(train,), name="seed-model", daemon=True).start()

    def _train(self, train: Callable[[], TextClassifier]) -> None:
        try:
            self._model = train()
        except BaseException as exc:  # noqa: BLE001 - kept, and raised where the model is first used
            self._error = exc
        finally:
            self._done.set()

    async def ready(self) -> None:
        if not self._done.is_set():
            await asyncio.to_thread(self._done.wait)
        if self._error is not None:
            raise RuntimeError(f"training the seed text model failed: {self._error}") from self._error

    def model(self) -> TextClassifier:
        self._done.wait()  # after ready(): at once
        if self._error is not None:
            raise RuntimeError(f"training the seed text model failed: {self._error}") from self._error
        assert self._model is not None
        return self._model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model(), name)


def text_model(settings: Settings, pack: CityPack) -> tuple[TextClassifier, TriagePolicy]:
    """The city's model file if one is set (with the triage thresholds chosen when it was trained), else the seed."""
    if settings.model is None:
        seed = TrainingInBackground(seed_classifier)
        return seed, TriagePolicy(settings.triage_threshold)  # type: ignore[return-value]
    from classifiers.modelfile import load_model  # skops: most of a second of imports, for model files only

    classifier, metadata = load_model(settings.model)
    unknown = sorted(set(classifier.classes) - {c.code for c in pack.spec.categories})
    if unknown:
        log.warning("model %s knows categories that %s does not: %s (such reports go to triage)",
                    settings.model, pack.name, ", ".join(unknown[:20]))  # fmt: skip
    trained = metadata.metrics.get("triage")
    policy = TriagePolicy.from_dict(trained) if trained else TriagePolicy(settings.triage_threshold)
    return classifier, policy


def transactional_sink(settings: Settings) -> TransactionalSink:
    """The exactly-once sink; its transactional id is the worker's id when it has one (a restart fences the old)."""
    worker = settings.worker_id or uuid.uuid4().hex[:12]
    return TransactionalSink(settings.kafka, f"{settings.consumer_group}-{worker}")


class SinkService(Service):
    """Starts the transactional producer before the ingest hands it a batch, and stops it after."""

    logger = logging.getLogger("faust.cityloop")

    def __init__(self, sink: TransactionalSink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sink = sink

    async def on_start(self) -> None:
        await self.sink.start()

    async def on_stop(self) -> None:
        await self.sink.stop()


class WorkerApp(faust.App):
    """Faust's app for a worker whose inputs are read by streams/ingest.py: no agents, no tables, no group of its own.

    Faust would wait for its table recovery, which only completes after its
    consumer joins a group, before it starts timers, web views and services;
    with no table there is nothing to recover, so it starts them at once. Its
    consumer subscribes to nothing (streams/transport.py) and joins no group.
    """

    logger = logging.getLogger("faust.cityloop")  # its "Starting..."/"Stopping..." lines: Faust's, behind --verbose
    early_services: list[Any]  # started with the app, right after its producer: the ingest

    async def _wait_for_table_recovery_completed(self) -> bool:
        if len(self.tables) == 0:
            return bool(self.should_stop)
        return bool(await super()._wait_for_table_recovery_completed())

    def on_init_dependencies(self) -> Any:
        # Faust starts an @app.service only once everything else is up, a second after its table manager waits for
        # tables; the ingest needs only the producer (its output goes through it), so it starts right after it.
        dependencies = list(super().on_init_dependencies())
        after = next((i + 1 for i, d in enumerate(dependencies) if d is self.producer), len(dependencies))
        return [*dependencies[:after], *getattr(self, "early_services", []), *dependencies[after:]]


def create_app(settings: Settings, pack: CityPack) -> faust.App:
    """Build the worker app for one deployment (settings) and city (pack)."""
    topics = Topics(settings.topic_prefix)
    kafka = settings.kafka
    datadir = (settings.data_dir / "worker").resolve()  # Faust's files: under CITYLOOP_DATA_DIR, not the cwd
    datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = WorkerApp(
        settings.consumer_group,
        broker=[f"{transport.SCHEME}://{server}" for server in kafka.servers],
        broker_credentials=kafka.faust_credentials(),
        store="memory://",
        # The dev broker (Tansu) takes half the session timeout to complete a group join: Faust's default would make
        # joins slow there. Faust's own consumer joins no group here anyway (topic_disable_leader below).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        producer_max_batch_size=256 * 1024,  # a batch's records for one partition go in one produce request
        producer_request_timeout=settings.produce_timeout_s,
        datadir=str(datadir),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        autodiscover=False,
        # Faust's own consumer reads no CityLoop topic (streams/ingest.py does): without its leader topic it joins
        # no group, which cost a group join (about 3 s on Tansu) at every start and every rebalance
        topic_disable_leader=True,
    )
    watch = modelwatch.watch_for(settings, pack)  # the model registry, when one is set
    loaded = watch.load_current() if watch is not None else None
    if loaded is not None:
        classifier, triage_policy, model_version = loaded.classifier, loaded.policy, loaded.version
    else:
        classifier, triage_policy = text_model(settings, pack)
        model_version = modelwatch.baseline_version(settings)
    transactions = transactional_sink(settings) if settings.processing_guarantee == "exactly_once" else None
    sink = transactions or FaustSink(app)
    # no silent retries in the client: a call retried across a Redis restart would write into an empty Redis unseen;
    # the worker's own retries (streams/state.py, _process below) wait out outages and check the state epoch first
    redis_client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5,
                                           retry=Retry(NoBackoff(), 0))  # fmt: skip
    parts = worker_parts(settings, pack, classifier, triage_policy, redis_client, sink)
    engine, lifecycle = parts.engine, parts.lifecycle
    guard = worker_guard(settings, pack, redis_client)
    engine.use_model(classifier, triage_policy, model_version)
    if watch is not None:
        watch.attach(engine, model_version)
    else:
        modelwatch.show_version(model_version)
    app.cityloop_engine = engine  # type: ignore[attr-defined]

    # the inputs skip Faust's per-event path: one aiokafka consumer, batches per topic (streams/ingest.py)
    async def model_ready() -> None:
        if isinstance(classifier, TrainingInBackground):
            try:
                await classifier.ready()
            except RuntimeError as exc:
                log.critical("%s; stopping the worker", exc)
                await app.crash(exc)
                raise

    @app.task
    async def settle_memory() -> None:
        """Once the worker is built (and the seed model trained), exempt what exists from garbage collection.

        The worker makes about 190,000 long-lived objects at start (Faust, the
        city pack, the model); every full collection walked them all, which cost
        about a fifth of a busy worker's CPU. Frozen, they are never traversed again.
        """
        if isinstance(classifier, TrainingInBackground):
            with contextlib.suppress(RuntimeError):  # the handlers report a failed training and stop the worker
                await classifier.ready()
        gc.collect()
        gc.freeze()

    async def reports(envelopes: list[Envelope]) -> None:
        await model_ready()
        if watch is None:
            await _process("reports", guard.gated(engine.process_reports), engine, envelopes)
            return
        async with watch.between_batches:  # a new model version is switched to between batches only
            await _process("reports", guard.gated(engine.process_reports), engine, envelopes)

    if watch is not None and settings.model_poll_s > 0:

        @app.task
        async def watch_model_registry() -> None:
            await watch.run()

    async def readings(envelopes: list[Envelope]) -> None:
        await _process("readings", guard.gated(engine.process_readings), engine, envelopes)

    # the closed loop: work orders from feedback events, and the SLA timer
    app.cityloop_lifecycle = lifecycle  # type: ignore[attr-defined]

    async def feedback(envelopes: list[Envelope]) -> None:
        await model_ready()
        await _process("feedback", guard.gated(engine.process_feedback), engine, envelopes)  # triage decisions
        await _process("lifecycle", guard.gated(lifecycle.process), engine, envelopes)  # work orders

    ingest = BatchIngest(
        kafka=kafka,
        group_id=settings.ingest_group,
        group_instance_id=f"{settings.ingest_group}-{settings.worker_id}" if settings.worker_id else None,
        session_timeout_s=settings.group_session_timeout_s,
        handlers=dict(zip(topics.inputs(), (reports, readings, feedback), strict=True)),  # reports, readings, feedback
        batch_size=settings.batch_size,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        loop=app.loop,
        beacon=app.beacon,
        transactions=transactions,
    )
    app.early_services = [ingest] if transactions is None else [SinkService(transactions, loop=app.loop), ingest]
    app.cityloop_ingest = ingest  # type: ignore[attr-defined]

    @app.task
    async def watch_state() -> None:
        """At start, and every few seconds while idle: a Redis that lost its state is rebuilt before work arrives."""
        await guard.watch()

    @app.timer(interval=settings.timer_interval_s, name="fire_deadlines")
    async def fire_deadlines() -> None:
        if transactions is None:
            await fire_safely(parts.timer)
            return
        try:  # a round of timer events is one transaction, given up before the deadlines' lease runs out
            async with transactions.unit(give_up_after=settings.timer_lease_s / 2):
                await fire_safely(parts.timer)
        except (CommitAbandoned, ConnectionError) as exc:
            log.warning("SLA timer round not committed (%s); its deadlines fire again once their lease ends", exc)

    metrics.start_worker_series(REASON_CODES, [c.code for c in pack.spec.categories], STAGES)
    observability.start_series(pack, STAGES)
    probe = lagprobe.probe_for(ingest, kafka, settings.ingest_group)

    @app.task
    async def probe_lag() -> None:
        """Fresh log ends for the lag while the worker's own consumer holds a backlog (streams/lagprobe.py)."""
        await probe.run()

    log_end = lagprobe.larger_end(ingest.highwater, probe.highwater)
    ingest_lag = lag.LagSource(ingest.offsets, log_end, lambda: ingest.committed, probe.start)
    lags = observability.install(app, topics, [ingest_lag])
    about = {"city": pack.name, "city_version": pack.version}
    app.cityloop_health = workerhealth.install(  # type: ignore[attr-defined]
        app, ingest, lags, settings.redis_url, settings.stall_s, settings.loop_block_s, about, state=guard
    )
    return app
