"""Liveness and readiness: what a probe should be told, decided from plain numbers (no I/O, time is a parameter).

Two questions, two answers (Kubernetes asks both, and acts differently on each):

* **Live** (``/livez``): is this process still doing its job, or would a restart help? A worker is not live when it
  has stopped making progress while work waits (consumer lag above zero and no batch finished for
  ``CITYLOOP_STALL_S``), or when its event loop is blocked (the heartbeat task's tick is late by more than
  ``CITYLOOP_LOOP_BLOCK_S``, now or within the last :data:`BLOCK_MEMORY_S`). A worker with nothing to do is live:
  idle is not broken. A frozen process (SIGSTOP, a loop blocked right now) cannot answer at all; a probe with a
  timeout counts that as a failure, which is why the probes have one.
* **Ready** (``/readyz``, and ``/health``, kept as its old name): can it serve now? A worker is ready while it holds
  partitions and its broker and Redis answer, and not once told to stop; the API while Redis answers. Not ready
  is not a reason to restart: an outage of Redis or the broker makes every replica not ready and none of them not
  live, until the worker has been stuck for the stall time.

Why both clocks: the incident that asked for this found ``/health`` answering 200 "ready" while a worker processed
nothing (Redis paused or killed, the broker paused or killed, a 63 s stall after a broker restart), and a TCP
liveness check that passed with the process frozen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
OLD_READINESS_PATH = "/health"  # what scripts, compose and the demo ask; the same answer as READINESS_PATH
CHECK_TIMEOUT_S = 2.0  # a dependency that takes longer to answer a check is unreachable, as far as probes go
BLOCK_MEMORY_S = 10.0  # a late tick keeps liveness failing for one liveness period: repeated blocks fail it in a row


@dataclass(frozen=True)
class Verdict:
    """One probe's answer: ok (200) or not (503), a status word, and the reasons when not ok."""

    ok: bool
    status: str
    reasons: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def body(self, **extra: Any) -> dict[str, Any]:
        return {"status": self.status, **({"reasons": list(self.reasons)} if self.reasons else {}), **self.details,
                **extra}  # fmt: skip


class Heartbeat:
    """The event loop's pulse: a task ticks every ``interval_s``; a tick that comes late says the loop was blocked.

    ``blocked_for(now)`` is how long the loop has been (or was recently) unable to run the heartbeat beyond its
    interval, when that exceeds ``block_s``; None when the loop is responsive.
    """

    def __init__(self, interval_s: float, block_s: float, now: float, memory_s: float = BLOCK_MEMORY_S) -> None:
        self.interval_s = interval_s
        self.block_s = block_s
        self.memory_s = memory_s
        self.last_tick = now
        self.running = False  # until run() starts, nothing is known about the loop (a worker starts for seconds)
        self.ticks = 0
        self.worst_late_s = 0.0  # the latest block longer than block_s, and when it ended
        self.blocked_until: float | None = None

    def tick(self, now: float) -> None:
        late = now - self.last_tick - self.interval_s
        if late > self.block_s:
            self.worst_late_s, self.blocked_until = late, now
        self.last_tick = now
        self.ticks += 1

    def late_s(self, now: float) -> float:
        """How late the next tick is already (0 while it is not due, or before the heartbeat runs)."""
        return max(0.0, now - self.last_tick - self.interval_s) if self.running else 0.0

    def blocked_for(self, now: float) -> float | None:
        current = self.late_s(now)
        if current > self.block_s:
            return current
        if self.blocked_until is not None and now - self.blocked_until <= self.memory_s:
            return self.worst_late_s
        return None

    def start(self, now: float) -> None:
        self.last_tick, self.running = now, True

    async def run(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.start(clock())
        while True:
            await asyncio.sleep(self.interval_s)
            self.tick(clock())


class ProgressWatch:
    """Whether the worker is stuck: work waits (lag > 0) and no batch has finished for longer than ``stall_s``.

    The stall clock starts at the later of the last finished batch and the last time nothing waited, so a worker
    that was idle for an hour is not stalled the moment a record arrives.
    """

    def __init__(self, stall_s: float, now: float) -> None:
        self.stall_s = stall_s
        self.since = now  # the last moment the worker was known to be keeping up
        self.lag: int | None = None

    def observe(self, now: float, lag: int | None, last_batch_at: float | None) -> None:
        """Record the current lag (None: unknown) and when a batch last finished (None: never)."""
        self.lag = lag
        if last_batch_at is not None and last_batch_at > self.since:
            self.since = last_batch_at
        if lag is not None and lag <= 0:
            self.since = now

    def stalled_for(self, now: float) -> float | None:
        """Seconds since the last progress while work waits, once beyond ``stall_s``; else None."""
        if self.lag is None or self.lag <= 0:
            return None
        waited = now - self.since
        return waited if waited > self.stall_s else None


@dataclass
class Dependency:
    """The last check of one dependency (Redis, the broker): whether it answered, when, and the error if not."""

    name: str
    ok: bool = False
    checked_at: float | None = None
    error: str = "not checked yet"

    def record(self, now: float, error: str | None) -> None:
        self.ok, self.checked_at, self.error = error is None, now, error or ""

    def fresh_ok(self, now: float, max_age_s: float) -> bool:
        return self.ok and self.checked_at is not None and now - self.checked_at <= max_age_s


def worker_liveness(now: float, heartbeat: Heartbeat, progress: ProgressWatch) -> Verdict:
    """Live unless the event loop is blocked or the worker is stuck with work waiting."""
    reasons = []
    blocked = heartbeat.blocked_for(now)
    if blocked is not None:
        reasons.append(f"event loop blocked for {blocked:.1f} s (more than {heartbeat.block_s:g} s)")
    stalled = progress.stalled_for(now)
    if stalled is not None:
        reasons.append(f"no batch finished for {stalled:.0f} s while {progress.lag} records wait "
                       f"(more than {progress.stall_s:g} s)")  # fmt: skip
    details = {"lag": progress.lag, "since_progress_s": round(now - progress.since, 1),
               "loop_late_s": round(heartbeat.late_s(now), 3)}  # fmt: skip
    return Verdict(not reasons, "stuck" if reasons else "alive", tuple(reasons), details)


def worker_readiness(
    now: float,
    partitions: int,
    dependencies: list[Dependency],
    max_age_s: float,
    state_problem: str | None = None,
    stopping: bool = False,
) -> Verdict:
    """Ready while it holds partitions, every dependency answered within ``max_age_s``, Redis holds its state and it
    is not stopping.

    ``state_problem`` says why Redis's state cannot be used (lost, being rebuilt: streams/epoch.py), None when it can.
    """
    reasons = [f"{d.name} unreachable: {d.error or 'no answer within ' + format(max_age_s, 'g') + ' s'}"
               for d in dependencies if not d.fresh_ok(now, max_age_s)]  # fmt: skip
    if state_problem:
        reasons.append(state_problem)
    if partitions == 0:
        reasons.append("no partitions assigned")
    status = "ready" if not reasons else ("starting" if partitions == 0 and len(reasons) == 1 else "unavailable")
    if stopping:  # a signal arrived: no new work for it, whatever else holds
        reasons.insert(0, "stopping (SIGTERM or Ctrl-C received)")
        status = "stopping"
    details = {"assigned_partitions": partitions, **{d.name: d.fresh_ok(now, max_age_s) for d in dependencies}}
    return Verdict(not reasons, status, tuple(reasons), details)


def api_readiness(redis_error: str | None) -> Verdict:
    """The API is ready while Redis answers (``redis_error`` None); it serves nothing useful without it."""
    if redis_error is None:
        return Verdict(True, "ready", (), {"redis": True})
    return Verdict(False, "unavailable", (f"redis unreachable: {redis_error}",), {"redis": False})


async def answers(ask: Callable[[], Awaitable[Any]], timeout_s: float = CHECK_TIMEOUT_S) -> str | None:
    """None if ``ask()`` (a Redis PING, a broker metadata request) completes within ``timeout_s``, else why not."""
    try:
        await asyncio.wait_for(ask(), timeout_s)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the answer
        return f"{type(exc).__name__}: {exc}"[:300]
    return None
