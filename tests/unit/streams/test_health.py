"""Liveness and readiness decisions (streams/health.py) on a fake clock, the heartbeat on a real event loop, and the
API's /livez and /readyz with its Redis away (fakeredis disconnected).

The drills (tests/drills/test_health_probes.py) check the same against real processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import fakeredis
import pytest
from fastapi.testclient import TestClient

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams import health
from streams.api import create_api
from streams.settings import load_settings

STALL_S = 60.0


def watch(now: float = 1000.0) -> health.ProgressWatch:
    return health.ProgressWatch(STALL_S, now)


def live(progress: health.ProgressWatch, now: float, heartbeat: health.Heartbeat | None = None) -> health.Verdict:
    beat = heartbeat or health.Heartbeat(0.5, 10.0, now)
    return health.worker_liveness(now, beat, progress)


def test_a_worker_with_records_waiting_and_no_batch_finished_for_the_stall_time_is_not_live():
    progress = watch()
    progress.observe(1000.0, lag=0, last_batch_at=None)
    progress.observe(1001.0, lag=250, last_batch_at=1000.5)  # the last batch finished at 1000.5
    assert live(progress, 1000.5 + STALL_S - 1).ok
    progress.observe(1000.5 + STALL_S + 1, lag=250, last_batch_at=1000.5)
    verdict = live(progress, 1000.5 + STALL_S + 1)
    assert not verdict.ok and verdict.http_status == 503 and verdict.status == "stuck"
    assert "no batch finished for 61 s while 250 records wait" in verdict.reasons[0]


def test_a_worker_that_keeps_finishing_batches_is_live_however_long_the_backlog_lasts():
    progress = watch()
    for second in range(0, 600, 5):
        now = 1000.0 + second
        progress.observe(now, lag=100_000, last_batch_at=now - 1)
        assert live(progress, now).ok, second


def test_an_idle_worker_is_live_and_the_stall_clock_starts_when_work_arrives_not_at_the_last_batch():
    progress = watch()
    progress.observe(1000.0, lag=5, last_batch_at=999.0)
    progress.observe(1001.0, lag=0, last_batch_at=999.5)
    progress.observe(5000.0, lag=0, last_batch_at=999.5)  # idle for more than an hour: live
    assert live(progress, 5000.0).ok
    progress.observe(5001.0, lag=3, last_batch_at=999.5)  # work arrives; the last batch was long ago
    assert live(progress, 5001.0).ok
    assert live(progress, 5000.0 + STALL_S - 0.5).ok
    progress.observe(5000.0 + STALL_S + 0.5, lag=3, last_batch_at=999.5)
    assert not live(progress, 5000.0 + STALL_S + 0.5).ok


def test_an_unknown_lag_never_fails_liveness():
    progress = watch()
    progress.observe(1000.0, lag=None, last_batch_at=None)
    assert live(progress, 1000.0 + 10 * STALL_S).ok


def test_a_heartbeat_late_by_more_than_the_block_time_fails_liveness_and_clears_after_its_memory():
    beat = health.Heartbeat(interval_s=0.5, block_s=10.0, now=-100.0, memory_s=30.0)
    progress = watch(0.0)
    assert beat.blocked_for(0.0) is None  # constructed 100 s before the heartbeat runs: not a block
    beat.start(0.0)
    for tick in range(1, 20):
        beat.tick(tick * 0.5)
    assert beat.blocked_for(9.6) is None and live(progress, 9.6, beat).ok
    # no tick for 12 s: blocked now (a probe answered from another thread, or right after the block, sees it)
    assert beat.blocked_for(9.5 + 12.0) == pytest.approx(11.5)
    verdict = live(progress, 9.5 + 12.0, beat)
    assert not verdict.ok and "event loop blocked for 11.5 s" in verdict.reasons[0]
    beat.tick(22.0)  # the loop runs again: the late tick is remembered
    assert beat.blocked_for(22.1) == pytest.approx(12.0)
    for tick in range(45, 110):
        beat.tick(tick * 0.5)
    assert beat.blocked_for(54.6) is None and live(progress, 54.6, beat).ok


def test_a_tick_late_by_less_than_the_block_time_is_not_a_block():
    beat = health.Heartbeat(interval_s=0.5, block_s=10.0, now=0.0)
    beat.start(0.0)
    beat.tick(9.0)  # 8.5 s late
    assert beat.blocked_for(9.1) is None


def test_the_heartbeat_on_a_real_event_loop_sees_a_blocking_call():
    """A synchronous sleep in the loop (the kind of call that freezes a worker) makes the next tick late."""

    async def scenario() -> float | None:
        beat = health.Heartbeat(interval_s=0.05, block_s=0.3, now=time.monotonic())
        task = asyncio.create_task(beat.run())
        await asyncio.sleep(0.2)
        assert beat.ticks >= 2 and beat.blocked_for(time.monotonic()) is None
        time.sleep(0.6)  # noqa: ASYNC251 - the point: the event loop is blocked
        await asyncio.sleep(0.1)  # the heartbeat runs again, late
        blocked = beat.blocked_for(time.monotonic())
        task.cancel()
        return blocked

    blocked = asyncio.run(scenario())
    assert blocked is not None and blocked > 0.3


def test_a_worker_is_ready_only_with_partitions_and_a_recent_answer_from_the_broker_and_redis():
    broker, redis = health.Dependency("broker"), health.Dependency("redis")
    assert health.worker_readiness(100.0, 4, [broker, redis], 5.0).status == "unavailable"  # not checked yet
    broker.record(100.0, None)
    redis.record(100.0, None)
    ready = health.worker_readiness(101.0, 4, [broker, redis], 5.0)
    assert ready.ok and ready.status == "ready" and ready.body()["assigned_partitions"] == 4
    starting = health.worker_readiness(101.0, 0, [broker, redis], 5.0)
    assert not starting.ok and starting.status == "starting" and starting.reasons == ("no partitions assigned",)
    redis.record(102.0, "no answer within 2 s")
    away = health.worker_readiness(102.0, 4, [broker, redis], 5.0)
    assert away.http_status == 503 and away.reasons == ("redis unreachable: no answer within 2 s",)
    redis.record(103.0, None)
    stale = health.worker_readiness(109.0, 4, [broker, redis], 5.0)  # the checks stopped answering: not ready
    assert not stale.ok and {r.split()[0] for r in stale.reasons} == {"broker", "redis"}


def test_a_worker_whose_redis_lost_its_state_is_not_ready_and_says_why():
    broker, redis = health.Dependency("broker"), health.Dependency("redis")
    broker.record(100.0, None)
    redis.record(100.0, None)  # Redis answers PING: it is up, but empty
    lost = health.worker_readiness(101.0, 4, [broker, redis], 5.0, "Redis lost its state; rebuilding it from the log")
    assert lost.http_status == 503 and lost.reasons == ("Redis lost its state; rebuilding it from the log",)
    assert health.worker_readiness(101.0, 4, [broker, redis], 5.0, None).ok


def test_answers_gives_the_reason_a_dependency_did_not_answer():
    async def hangs() -> None:
        await asyncio.sleep(60)

    async def fails() -> None:
        raise ConnectionRefusedError("refused")

    async def ok() -> bool:
        return True

    assert asyncio.run(health.answers(hangs, timeout_s=0.05)) == "no answer within 0.05 s"
    assert asyncio.run(health.answers(fails)) == "ConnectionRefusedError: refused"
    assert asyncio.run(health.answers(ok)) is None


def test_the_apis_liveness_does_not_ask_redis_and_its_readiness_does(tmp_path: Path):
    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    server = fakeredis.FakeServer()

    class Writer:
        async def write(self, topic: str, key: str, record: dict) -> None:
            pass

    app = create_api(load_settings(topic_prefix="t"), pack, redis_client=fakeredis.FakeAsyncRedis(server=server),
                     writer=Writer())  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        assert [client.get(p).status_code for p in ("/livez", "/readyz", "/health")] == [200, 200, 200]
        server.connected = False  # Redis away
        assert client.get("/livez").status_code == 200
        for path in ("/readyz", "/health"):
            answer = client.get(path)
            assert answer.status_code == 503 and answer.json()["status"] == "unavailable", answer.text
            assert answer.json()["reasons"][0].startswith("redis unreachable")
        server.connected = True
        assert client.get("/readyz").status_code == 200
