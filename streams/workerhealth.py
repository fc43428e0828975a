"""The worker's /livez, /readyz and /health: the checks behind them, run in the background, and the views.

The views answer from what the background tasks last found, at once: a probe never waits on Redis or the broker.
Three tasks run in the worker's event loop: the heartbeat (ticks every half second; a late tick means the loop was
blocked), and one check per dependency every second: Redis answers PING, the broker answers a metadata request
(through the ingest consumer's own client: the connection it fetches with). Each waits at most
``streams.health.CHECK_TIMEOUT_S``; a paused Redis or broker (connections accepted, nothing answers) fails by then.
The decisions are in streams/health.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import redis.asyncio as aioredis

from streams import health, lag
from streams.epoch import StateGuard
from streams.ingest import BatchIngest

HEARTBEAT_S = 0.5
CHECK_INTERVAL_S = 1.0
CHECK_MAX_AGE_S = 5.0  # a dependency whose last good answer is older than this counts as unreachable


class WorkerHealth:
    """What the probes are told about one worker; ``clock`` is monotonic seconds (tests give their own)."""

    def __init__(self, ingest: BatchIngest, lags: lag.LagCollector, redis_url: str, stall_s: float,
                 loop_block_s: float, clock: Callable[[], float] = time.monotonic,
                 state: StateGuard | None = None) -> None:  # fmt: skip
        now = clock()
        self.state = state  # Redis's state lost or being rebuilt: not ready (streams/epoch.py)
        self.clock = clock
        self.ingest = ingest
        self.lags = lags
        self.heartbeat = health.Heartbeat(HEARTBEAT_S, loop_block_s, now)
        self.progress = health.ProgressWatch(stall_s, now)
        self.redis = health.Dependency("redis")
        self.broker = health.Dependency("broker")
        self.stopping = False  # set by the worker's signal handler: not ready from the first SIGTERM or Ctrl-C
        self._redis_client = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)

    def observe(self) -> None:
        self.progress.observe(self.clock(), self.lags.total(), self.ingest.last_batch_at)

    def liveness(self) -> health.Verdict:
        self.observe()
        return health.worker_liveness(self.clock(), self.heartbeat, self.progress)

    def readiness(self) -> health.Verdict:
        partitions = len(self.ingest.offsets.assigned)
        problem = self.state.problem if self.state is not None else None
        return health.worker_readiness(self.clock(), partitions, [self.broker, self.redis], CHECK_MAX_AGE_S, problem,
                                       self.stopping)  # fmt: skip

    async def check_redis(self) -> None:
        self.redis.record(self.clock(), await health.answers(self._redis_client.ping))

    async def check_broker(self) -> None:
        consumer = self.ingest.consumer
        if consumer is None:
            self.broker.record(self.clock(), "the ingest consumer is not running")
            return
        client = consumer._client  # aiokafka's own client: the connections the worker really fetches over
        self.broker.record(self.clock(), await health.answers(client.fetch_all_metadata))

    async def keep_checking(self, check: Callable[[], Awaitable[None]]) -> None:
        while True:
            await check()
            self.observe()
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def close(self) -> None:
        await self._redis_client.aclose()


def install(app: faust.App, ingest: BatchIngest, lags: lag.LagCollector, redis_url: str, stall_s: float,
            loop_block_s: float, about: dict[str, Any], state: StateGuard | None = None) -> WorkerHealth:  # fmt: skip
    """Add the health tasks and the /livez, /readyz and /health views to the worker's app."""
    watch = WorkerHealth(ingest, lags, redis_url, stall_s, loop_block_s, state=state)

    @app.task
    async def heartbeat() -> None:
        await watch.heartbeat.run(watch.clock)

    @app.task
    async def check_redis() -> None:
        await watch.keep_checking(watch.check_redis)

    @app.task
    async def check_broker() -> None:
        await watch.keep_checking(watch.check_broker)

    def answer(web: Any, verdict: health.Verdict) -> Any:
        return web.json(verdict.body(**about), status=verdict.http_status)

    @app.page(health.LIVENESS_PATH)
    async def livez(web: Any, request: Any) -> Any:
        return answer(web, watch.liveness())

    @app.page(health.READINESS_PATH)
    async def readyz(web: Any, request: Any) -> Any:
        return answer(web, watch.readiness())

    @app.page(health.OLD_READINESS_PATH)
    async def health_view(web: Any, request: Any) -> Any:  # the readiness, under the name probes and scripts used
        return answer(web, watch.readiness())

    return watch
