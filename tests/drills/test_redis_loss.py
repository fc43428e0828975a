"""Drill: Redis killed and restarted EMPTY mid-stream, against the same input with Redis merely paused.

The input is what made the loss cost +12% incidents (docs/OPERATIONS.md, "Losing Redis"): problems reported and
dispatched, then neighbours' repeat reports of the same problems (20 m away, same category), which should join
them. Redis goes away while the repeats arrive. Paused, it comes back with its merge index and orders; killed and
restarted without persistence, it comes back empty, and the worker must notice (the state epoch is gone), stop, and
rebuild the merge index and orders from the Kafka log before it goes on (streams/epoch.py, streams/rebuild.py).
Both runs use a private redis-server (tests/ops/redisproc.py) and their own topic prefix.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.topics import Topics
from tests.integration.conftest import WorkerFactory, collect, free_port
from tests.ops.fixtures import encoded, figures, make_report, outcome, send, total
from tests.ops.redisproc import PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBLEMS = 1000  # reported first, each dispatched
REPEATS = 1000  # a neighbour's report of each, 20 m away: should join it
FRESH = 200  # new problems after the repeats
AWAY_S = 4.0  # how long Redis is paused, or dead before it restarts empty
REPEAT_OFFSET_DEG = 0.00018  # about 20 m north: within the 150 m merge radius


def stream(prefix: str) -> list[tuple[bytes, bytes]]:
    """Problems, then a repeat of each, then fresh problems: the same records (by id) for both runs."""
    now = datetime.now(UTC).isoformat()
    originals = [make_report(i, prefix, now) for i in range(PROBLEMS)]
    repeats = [{**r, "report_id": f"{prefix}-again-{i}", "lat": r["lat"] + REPEAT_OFFSET_DEG,
                "text": "something needs fixing here, still"} for i, r in enumerate(originals)]  # fmt: skip
    fresh = [make_report(PROBLEMS + i, prefix, now) for i in range(FRESH)]
    return [encoded(r) for r in [*originals, *repeats, *fresh]]


@dataclass
class Run:
    incidents: int
    task_records: int
    tasks: int
    lost: int
    split: int
    assigned_twice: int
    rebuilds: int
    rebuild_seconds: float
    worker_log: str


def run(mode: str, bootstrap: str, producer: Any, prefix: str, tmp: Path) -> Run:
    """One run: a worker on a private Redis; once most problems are dispatched, Redis is paused or lost."""
    redis = PrivateRedis(free_port(), tmp / f"redis-{mode}")
    redis.start()
    factory = WorkerFactory(bootstrap, redis.url, prefix, tmp / mode)
    (tmp / mode).mkdir(parents=True, exist_ok=True)
    try:
        worker = factory.start()
        topics = Topics(prefix)
        records = stream(prefix)
        sender = threading.Thread(target=send, args=(producer, topics.reports, records), kwargs={"every": 50,
                                  "pause": 0.25})  # fmt: skip
        sender.start()
        # the repeats start after the problems: by 900 tasks most problems are dispatched and repeats are coming
        collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 900, timeout=60)
        if mode == "paused":
            redis.pause()
            time.sleep(AWAY_S)
            redis.resume()
        else:
            redis.kill()
            time.sleep(AWAY_S)
            redis.restart_empty()
        sender.join(timeout=120)
        assert not sender.is_alive()
        ids = {encoded_id.decode() for encoded_id, _ in records}
        result = outcome(bootstrap, topics, ids, timeout=90)
        assert worker.process.poll() is None, f"the worker died:\n{worker.log()[-2000:]}"
        metrics = worker.metrics()
        return Run(
            incidents=len({i for homes in result.home.values() for i in homes}),
            task_records=result.task_records,
            tasks=sum(len(t) for t in result.tasks.values()),
            lost=len(result.lost(ids)),
            split=len(result.split()),
            assigned_twice=len(result.assigned_twice()),
            rebuilds=int(total(metrics, "cityloop_state_rebuilds_total", outcome="done")),
            rebuild_seconds=total(metrics, "cityloop_state_rebuild_seconds"),
            worker_log=worker.log(),
        )
    finally:
        factory.stop_all()
        redis.stop()


def test_redis_restarted_empty_mid_stream_dispatches_no_more_than_redis_paused(bootstrap, producer, namespace,
                                                                               tmp_path):  # fmt: skip
    """The same 2,200 reports (1,000 problems, a repeat of each, 200 fresh problems) twice: Redis paused 4 s, then
    Redis killed and restarted empty after 4 s, both once 900 tasks are out. Killed, the worker rebuilds its state
    from the log and dispatches at most 0.5% more incidents than paused; no report is lost either way."""
    paused = run("paused", bootstrap, producer, f"{namespace}p", tmp_path)
    killed = run("killed", bootstrap, producer, f"{namespace}k", tmp_path)
    extra = killed.incidents - paused.incidents
    rebuilt = [line for line in killed.worker_log.splitlines() if "rebuilt the state from the log" in line]
    figures(
        "redis-lost-vs-paused",
        reports=PROBLEMS + REPEATS + FRESH,
        paused_incidents=paused.incidents,
        killed_incidents=killed.incidents,
        extra=extra,
        extra_pct=f"{100 * extra / paused.incidents:.2f}%",
        lost_paused=paused.lost,
        lost_killed=killed.lost,
        tasks_paused=paused.tasks,
        tasks_killed=killed.tasks,
        task_records_killed=killed.task_records,
        rebuilds_killed=killed.rebuilds,
        rebuild_s=f"{killed.rebuild_seconds:.2f}",
    )
    if rebuilt:
        print(rebuilt[-1])
    assert paused.lost == 0 and killed.lost == 0, "every report is a source of an incident"
    assert paused.split == 0 and killed.split == 0, "no report in two incidents"
    assert paused.assigned_twice == 0 and killed.assigned_twice == 0, "no incident assigned twice"
    assert paused.incidents >= PROBLEMS + FRESH - 5, "the paused run merged repeats as it should"
    assert extra <= 0.005 * paused.incidents, f"{extra} more incidents with Redis lost than paused"
    assert paused.rebuilds == 1 and killed.rebuilds == 2, "a rebuild at first start; then one after the loss only"
