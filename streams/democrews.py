"""The demo's people: field crews and an ops-centre supervisor working tasks through the HTTP API.

A crew acknowledges a new task after a few seconds, sometimes rejects it
instead (with a reason), starts, and resolves it with a note; the supervisor
verifies resolved work, and now and then finds it not fixed and reopens it.
Every action is a real API call with the unit's token, so the demo exercises
the same routes a city's tablets and ops consoles would.

Delays are in demo seconds; the demo city's SLAs are compressed to match
(see :func:`demo_time_pack`), so some tasks are late and the SLA board lights up.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feedback.sla import parse_span

REJECT_REASONS = ("outside_remit", "wrong_location", "insufficient_information")


def demo_time_pack(pack_dir: Path, seconds_per_hour: float) -> None:
    """Compress a city pack's SLAs into demo time: an hour of target becomes ``seconds_per_hour`` seconds.

    Every target moves to a calendar clock (a working-time clock would stop
    outside the city's office hours, so a demo run at night would show nothing).
    """
    path = pack_dir / "city.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for category in document.get("categories", []):
        sla = category.get("sla")
        if not sla:
            continue
        for stage in ("acknowledge", "resolve", "verify"):
            if sla.get(stage):
                days, minutes = parse_span(str(sla[stage]))
                hours = days * 24 + minutes / 60
                sla[stage] = f"{hours * seconds_per_hour / 60:.4g}m"
        sla["clock"] = "calendar"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


@dataclass
class CrewLog:
    """What the people did, and what the API answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: Counter[str] = field(default_factory=Counter)  # action -> calls answered 200/202
    refused: Counter[str] = field(default_factory=Counter)  # "action status" -> count
    errors: list[str] = field(default_factory=list)


class Crews(threading.Thread):
    """Schedules each task's actions and runs them on a small pool of HTTP clients."""

    def __init__(self, api: str, tokens: dict[str, str], ops_unit: str, *, seed: int = 7,
                 reject_share: float = 0.06, reopen_share: float = 0.08) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.api = api.rstrip("/")
        self.tokens = tokens
        self.ops_unit = ops_unit
        self.rng = random.Random(seed)
        self.reject_share = reject_share
        self.reopen_share = reopen_share
        self.log = CrewLog()
        self.stopping = threading.Event()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._queue_lock = threading.Lock()
        self._order = 0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crew")
        self._seen: set[str] = set()

    # ----------------------------------------------------------------- plans

    def new_task(self, task: dict[str, Any]) -> None:
        """A task appeared on the tasks stream: its unit will act on it."""
        task_id, unit = task["task_id"], task["unit_id"]
        if task_id in self._seen or unit not in self.tokens:
            return
        self._seen.add(task_id)
        arbitrated = (task.get("reason") or {}).get("rule") in ("arbitration", "arbitrated")
        if not arbitrated and task.get("attempt", 1) == 1 and self.rng.random() < self.reject_share:
            reason = self.rng.choice(REJECT_REASONS)
            self._later(self.rng.uniform(0.5, 4.0), lambda: self._unit(unit, task_id, "reject",
                                                                       {"reason_code": reason}))  # fmt: skip
            return
        self._later(self.rng.uniform(0.5, 6.0), lambda: self._work(unit, task_id, task["incident_id"]))

    def _work(self, unit: str, task_id: str, incident_id: str) -> None:
        if not self._unit(unit, task_id, "ack", {}):
            return

        def start() -> None:
            if self._unit(unit, task_id, "start", {"note": "on site"}):
                self._later(self.rng.uniform(2.0, 10.0), resolve)

        def resolve() -> None:
            if self._unit(unit, task_id, "resolve", {"note": "fixed", "media_url": "https://photos.example/after.jpg"}):
                self._later(self.rng.uniform(1.0, 3.0), check)

        def check() -> None:
            if self.rng.random() < self.reopen_share:
                self._ops(incident_id, "reopen", {"reason": "the reporter says it is not fixed"})
            else:
                self._ops(incident_id, "verify", {"note": "checked"})

        self._later(self.rng.uniform(0.5, 2.0), start)

    # ------------------------------------------------------------- HTTP calls

    def _unit(self, unit: str, task_id: str, action: str, body: dict[str, Any]) -> bool:
        return self._call(f"/units/me/tasks/{task_id}/{action}", self.tokens[unit], body, action)

    def _ops(self, incident_id: str, action: str, body: dict[str, Any]) -> bool:
        return self._call(f"/ops/orders/{incident_id}/{action}", self.tokens[self.ops_unit], body, action)

    def _call(self, path: str, token: str, body: dict[str, Any], action: str) -> bool:
        request = urllib.request.Request(
            self.api + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                response.read()
            with self.log.lock:
                self.log.done[action] += 1
            return True
        except urllib.error.HTTPError as exc:
            with self.log.lock:
                self.log.refused[f"{action} {exc.code}"] += 1
            return False
        except OSError as exc:
            with self.log.lock:
                self.log.errors.append(f"{action}: {exc}")
            return False

    # --------------------------------------------------------------- the loop

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        with self._queue_lock:
            self._order += 1
            heapq.heappush(self._queue, (time.monotonic() + delay, self._order, action))

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            due = []
            with self._queue_lock:
                while self._queue and self._queue[0][0] <= now:
                    due.append(heapq.heappop(self._queue)[2])
            for action in due:
                self._pool.submit(action)
            time.sleep(0.05)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def pending(self) -> int:
        with self._queue_lock:
            return len(self._queue)
