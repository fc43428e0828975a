"""Noticing that Redis lost its state, and holding the worker back until it is rebuilt from the log.

Redis restarted without persistence (or from a lost volume) answers as if nothing had happened, with nothing in
it: the merge index gone, a repeat report of a problem already dispatched would open a new incident and get a task
of its own; the work orders gone, units' actions on their tasks would be refused. Measured before this existed: 775
more incidents (+12%) than the same input with Redis merely paused.

So the state carries an **epoch**: ``ns:state:epoch``, written (no expiry) once the state is known to be whole,
after a first start or a rebuild. A worker checks it before every batch, at start, and before retrying a Redis call
that failed (streams/state.py :func:`~streams.state.with_retry`, through :func:`install`). Missing, the worker
processes nothing (its readiness says why) until the state is rebuilt from the Kafka log (streams/rebuild.py): one
worker at a time, the one that takes ``ns:state:rebuild`` (``SET NX`` with an expiry it renews while it works, so a
worker that dies mid-rebuild hands over); the others wait for the new epoch. The batch that was interrupted is
retried whole, unacknowledged, once the state is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams import metrics, state

log = logging.getLogger(__name__)

LOCK_S = 30  # the rebuild lock's expiry, renewed every third of it while the rebuild runs
POLL_S = 0.5  # how often a waiting worker looks for the new epoch

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class StateLost(Exception):
    """Redis answers but has no state epoch: it lost its data. The batch waits, unacknowledged, for the rebuild."""


class StateBusy(Exception):
    """Another worker (or ``cityloop state rebuild``) holds the rebuild lock."""


class StateGuard:
    """One worker's view of whether Redis holds its state, and the rebuild when it does not."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        rebuild: Callable[[], Awaitable[Any]],
        *,
        lock_s: int = LOCK_S,
        poll_s: float = POLL_S,
    ) -> None:
        self._redis = client
        self._rebuild = rebuild
        self.epoch_key = f"{namespace}:state:epoch"
        self.lock_key = f"{namespace}:state:rebuild"
        self._lock_s = lock_s
        self._poll_s = poll_s
        self.epoch: str | None = None  # the last epoch seen
        self.problem: str | None = None  # why the worker is not processing (for readiness), None while it is
        self.last_summary: Any = None

    async def verify(self) -> None:
        """Raise :class:`StateLost` when Redis has no epoch (a connection error propagates: the caller retries)."""
        if await self._redis.get(self.epoch_key) is None:
            self.problem = "Redis lost its state (no state epoch); waiting for the rebuild from the log"
            raise StateLost(f"Redis has no {self.epoch_key}: it lost its state")

    async def ensure(self) -> None:
        """Return once Redis holds the epoch; when it does not, rebuild it (one worker) or wait for the rebuild."""
        while True:
            found = await self._redis.get(self.epoch_key)
            if found is not None:
                self._found(found.decode() if isinstance(found, bytes) else str(found))
                return
            if self.problem is None:
                log.info("Redis has no state epoch (%s): a first start, or Redis lost its state; processing waits "
                         "until the state is rebuilt from the log", self.epoch_key)  # fmt: skip
            try:
                await self.rebuild_now()
                continue
            except StateBusy:
                pass
            except (RedisConnectionError, RedisTimeoutError, OSError):
                raise  # Redis away again: the caller waits it out
            except Exception:  # noqa: BLE001 - a rebuild that failed (the broker away, say) is tried again
                log.exception("rebuilding the state from the log failed; trying again")
                await asyncio.sleep(self._poll_s)
                continue
            self.problem = "Redis lost its state; waiting for another worker's rebuild from the log"
            await asyncio.sleep(self._poll_s)

    def _found(self, epoch: str) -> None:
        if self.epoch is not None and epoch != self.epoch:
            log.info("Redis's state epoch is now %s (was %s): the state was rebuilt; processing again", epoch,
                     self.epoch)  # fmt: skip
        self.epoch = epoch
        self.problem = None

    async def rebuild_now(self) -> Any:
        """Rebuild under the lock and write a new epoch; the rebuild's summary. :class:`StateBusy` if another holds it.

        The worker calls it when the epoch is missing; ``cityloop state rebuild`` calls it by hand (it fills in only
        what is missing, so running it over a whole state changes nothing but the epoch).
        """
        token = uuid.uuid4().hex
        if not await self._redis.set(self.lock_key, token, nx=True, ex=self._lock_s):
            raise StateBusy(f"another process holds {self.lock_key}: a rebuild is running")
        self.problem = "Redis lost its state; rebuilding it from the log"
        renewing = asyncio.ensure_future(self._renew(token))
        started = time.monotonic()
        try:
            self.last_summary = await self._rebuild()
            epoch = f"{int(time.time())}-{token[:8]}"
            await self._redis.set(self.epoch_key, epoch)
            seconds = time.monotonic() - started
            metrics.STATE_REBUILDS.labels("done").inc()
            metrics.STATE_REBUILD_SECONDS.set(seconds)
            summary = getattr(self.last_summary, "line", None)
            said = summary() if summary else f"state rebuilt in {seconds:.1f} s"
            if getattr(self.last_summary, "records", 1):
                log.warning("%s; state epoch %s", said, epoch)
            else:  # nothing in the log either: a new deployment, not a loss
                log.info("a new deployment: nothing in the log to rebuild from; state epoch %s", epoch)
            return self.last_summary
        except Exception:
            metrics.STATE_REBUILDS.labels("failed").inc()
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            with contextlib.suppress(Exception):
                await self._redis.eval(_RELEASE, 1, self.lock_key, token)

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(self._lock_s / 3)
            with contextlib.suppress(Exception):
                await self._redis.eval(_RENEW, 1, self.lock_key, token, self._lock_s)

    async def watch(self, every_s: float = 2.0) -> None:
        """:meth:`ensure` now and every ``every_s`` seconds, so an idle worker rebuilds before work arrives."""
        while True:
            try:
                await self.ensure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: batches wait it out and readiness says so
                log.debug("state epoch not checked (%r)", exc)
            await asyncio.sleep(every_s)

    def gated(self, handle: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """``handle`` run only while Redis holds the state: the epoch is checked (and waited for) before each batch."""

        async def run(batch: Any) -> Any:
            await self.ensure()
            return await handle(batch)

        return run


def install_outage_check(guard: StateGuard | None) -> None:
    """Make every :func:`streams.state.with_retry` check the epoch before it retries a failed call (None: stop)."""
    state.set_outage_check(None if guard is None else guard.verify)
