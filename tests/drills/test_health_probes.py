"""Drills: what the liveness and readiness probes see when a worker freezes, when its Redis hangs with records
waiting, and when the API's Redis is away.

Real processes on loopback (a `cityloop worker` or `cityloop api` subprocess, a private redis-server that is
SIGSTOPped), probed the way the kubelet probes: an HTTP GET with the manifests' timeout, where no answer in time is a
failure (tests/ops/probes.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.conftest import collect, free_port, wait_for
from tests.ops.fixtures import encoded, figures, make_report, outcome, send
from tests.ops.probes import ProbeResult, manifest_probe, probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALL_S = 15.0  # the worker's CITYLOOP_STALL_S in the Redis drill (120 s by default), so the drill takes a minute
# how long the API's Redis stays away; the outage was about a minute: CITYLOOP_DRILL_REDIS_AWAY_S=60 for that
REDIS_AWAY_S = float(os.environ.get("CITYLOOP_DRILL_REDIS_AWAY_S", "30"))


def _until(seconds: float, url: str, timeout_s: float, want: bool) -> tuple[float, ProbeResult] | None:
    """Probe ``url`` until its success is ``want`` (or ``seconds`` pass): when, and the answer."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        result = probe(url, timeout_s)
        if result.ok == want:
            return time.monotonic() - started, result
        time.sleep(0.5)
    return None


def test_a_frozen_worker_fails_its_liveness_probe_by_timeout_though_a_tcp_check_still_passes(workers):
    """SIGSTOP: the kernel still accepts connections on the web port (what the old TCP liveness probe checked), but
    nothing answers: every HTTP liveness probe within the manifest's timeout fails, so the kubelet restarts the pod
    after failureThreshold periods. After SIGCONT the same process is live again."""
    worker = workers.start()
    liveness = manifest_probe("worker-deployment.yaml", "livenessProbe")
    timeout_s, period_s = liveness["timeoutSeconds"], liveness["periodSeconds"]
    url = f"http://127.0.0.1:{worker.web_port}/livez"
    before = probe(url, timeout_s)
    assert before.ok and before.body and before.body["status"] == "alive", before
    worker.process.send_signal(signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", worker.web_port), timeout=2):
            pass  # the TCP check passes on a frozen process
        frozen = [probe(url, timeout_s) for _ in range(liveness["failureThreshold"])]
    finally:
        worker.process.send_signal(signal.SIGCONT)
    assert all(not r.ok and r.status is None and r.why.startswith("timeout") for r in frozen), frozen
    assert all(r.seconds < period_s for r in frozen), "each probe fails within its period"
    recovered = _until(60, url, timeout_s, want=True)
    assert recovered is not None, worker.log()[-2000:]
    assert worker.process.poll() is None
    figures("worker-sigstop", probes_failed=len(frozen), probe_timeout_s=timeout_s,
            slowest_failure_s=round(max(r.seconds for r in frozen), 2),
            live_again_after_sigcont_s=round(recovered[0], 1))  # fmt: skip


def test_a_worker_whose_redis_hangs_with_records_waiting_turns_not_ready_then_not_live(
    private_workers, private_redis, producer, topics, bootstrap
):
    """Redis SIGSTOPped while reports arrive: /readyz turns 503 (Redis named) while /livez still answers 200; once no
    batch has finished for the stall time with lag > 0, /livez turns 503 too. After SIGCONT both recover and every
    report is processed."""
    worker = private_workers.start(CITYLOOP_STALL_S=str(STALL_S))
    base = f"http://127.0.0.1:{worker.web_port}"
    timeout_s = manifest_probe("worker-deployment.yaml", "readinessProbe")["timeoutSeconds"]
    now = datetime.now(UTC).isoformat()
    records = [encoded(make_report(i, "hang", now)) for i in range(1200)]
    send(producer, topics.reports, records[:200])
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 50, timeout=60)
    assert probe(f"{base}/readyz", timeout_s).ok and probe(f"{base}/livez", timeout_s).ok

    private_redis.pause()
    try:
        sender = threading.Thread(target=send, args=(producer, topics.reports, records[200:]))
        sender.start()
        not_ready = _until(30, f"{base}/readyz", timeout_s, want=False)
        assert not_ready is not None, "readiness stayed 200 with Redis hung"
        assert not_ready[1].status == 503 and "redis" in " ".join(not_ready[1].body["reasons"]), not_ready
        live_then = probe(f"{base}/livez", timeout_s)
        assert probe(f"{base}/health", timeout_s).status == 503
        not_live = _until(STALL_S + 30, f"{base}/livez", timeout_s, want=False)
        assert not_live is not None, "liveness stayed 200 with records waiting and nothing processed"
        body = not_live[1].body or {}
        assert not_live[1].status == 503 and body["lag"] > 0, not_live
        assert any("no batch finished" in r for r in body["reasons"]), body
        assert body["since_progress_s"] >= STALL_S
        sender.join(timeout=60)
    finally:
        private_redis.resume()
    assert live_then.ok, f"liveness failed before the stall time: {live_then}"
    ready_again = _until(60, f"{base}/readyz", timeout_s, want=True)
    live_again = _until(60, f"{base}/livez", timeout_s, want=True)
    assert ready_again is not None and live_again is not None
    ids = {f"hang-{i}" for i in range(len(records))}
    result = outcome(bootstrap, topics, ids, timeout=120)
    assert not result.lost(ids) and not result.assigned_twice()
    figures("worker-redis-hung", not_ready_after_s=round(not_ready[0], 1),
            not_live_after_s=round(not_ready[0] + not_live[0], 1), stall_s=STALL_S, lag_when_not_live=body["lag"],
            ready_again_s=round(ready_again[0], 1), processed=len(result.home))  # fmt: skip


def test_the_apis_liveness_stays_200_and_its_readiness_503_while_its_redis_is_away(
    bootstrap, private_redis, namespace, tmp_path: Path
):
    """A real `cityloop api`; its Redis is SIGSTOPped for REDIS_AWAY_S (30 s here, CITYLOOP_DRILL_REDIS_AWAY_S=60 for
    the issue's minute). Probed every second with the manifests' timeouts: every liveness probe succeeds (the API is
    not restarted), every readiness probe answers 503 (no traffic is sent to it); after SIGCONT it is ready again."""
    port = free_port()
    env = {**os.environ, "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_REDIS_URL": private_redis.url,
           "CITYLOOP_TOPIC_PREFIX": namespace, "CITYLOOP_API_PORT": str(port),
           "CITYLOOP_DATA_DIR": str(tmp_path / "data"), "CITYLOOP_DEV": "1"}  # fmt: skip
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    live_timeout = manifest_probe("api-deployment.yaml", "livenessProbe")["timeoutSeconds"]
    ready_timeout = manifest_probe("api-deployment.yaml", "readinessProbe")["timeoutSeconds"]
    try:
        assert wait_for(lambda: probe(f"{base}/readyz", ready_timeout).ok, timeout=60), log_path.read_text()
        private_redis.pause()
        lives: list[ProbeResult] = []
        readies: list[ProbeResult] = []
        try:
            deadline = time.monotonic() + REDIS_AWAY_S
            while time.monotonic() < deadline:
                lives.append(probe(f"{base}/livez", live_timeout))
                readies.append(probe(f"{base}/readyz", ready_timeout))
                time.sleep(1.0)
        finally:
            private_redis.resume()
        assert lives and all(r.ok for r in lives), [r for r in lives if not r.ok][:3]
        assert all(r.status == 503 for r in readies), [r for r in readies if r.status != 503][:3]
        assert process.poll() is None
        ready_again = _until(30, f"{base}/readyz", ready_timeout, want=True)
        assert ready_again is not None, log_path.read_text()[-2000:]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    figures("api-redis-away", away_s=REDIS_AWAY_S, liveness_probes_ok=f"{sum(r.ok for r in lives)}/{len(lives)}",
            readiness_probes_503=f"{sum(r.status == 503 for r in readies)}/{len(readies)}",
            slowest_readiness_s=round(max(r.seconds for r in readies), 2),
            ready_again_s=round(ready_again[0], 1))  # fmt: skip
