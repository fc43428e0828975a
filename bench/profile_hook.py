"""Runs ``cityloop`` (streams.cli) with a profile that signals switch on and off: for bench/cpu_per_report.py.

    python bench/profile_hook.py OUT cprofile|gc worker --loglevel warning

Run by path, not with ``-m``, so that ``streams`` comes from PYTHONPATH (the tree being measured, which may be
another commit's worktree) and not from the current directory. SIGRTMIN+1 starts, SIGRTMIN+2 stops and writes the
files; the worker's start-up and shutdown stay out. SIGUSR1 and SIGUSR2 are taken by mode (Faust's worker).

Both modes count the garbage collector between the signals (collections and CPU seconds per generation, from
``gc.callbacks`` and the collecting thread's CPU clock) into OUT.gc.json. ``cprofile`` also profiles the main thread
(the event loop, where the ingest, the engine and the lifecycle run) into OUT. Its clock is cProfile's default, wall
time, cheap to read (a thread's CPU clock made the worker 7x slower and inflated the small functions); waiting shows as
time in epoll's poll, which bench/cpu_per_report.py leaves out.
"""

from __future__ import annotations

import cProfile
import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

START, STOP = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2


class GcMeter:
    def __init__(self) -> None:
        self.on = False
        self.started: float | None = None
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.collected = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self.started = time.thread_time()
        elif self.started is not None:
            generation = info["generation"]
            self.seconds[generation] += time.thread_time() - self.started
            self.collections[generation] += 1
            self.collected[generation] += info.get("collected", 0)
            self.started = None

    def dump(self, path: str) -> None:
        Path(path).write_text(json.dumps({
            "seconds": self.seconds, "collections": self.collections, "collected": self.collected,
            "thresholds": gc.get_threshold(), "tracked_objects": len(gc.get_objects()),
        }))  # fmt: skip


def main() -> None:
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # bench/'s modules (common, latency, ...) must not shadow anything the worker imports
    out, mode = sys.argv[1], sys.argv[2]
    sys.argv = ["cityloop", *sys.argv[3:]]
    profiler = cProfile.Profile() if mode == "cprofile" else None
    collector = GcMeter()
    gc.callbacks.append(collector)

    def start(*_: object) -> None:
        collector.on = True
        if profiler is not None:
            profiler.enable()

    def stop(*_: object) -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(out)
        collector.on = False
        collector.dump(out + ".gc.json")

    signal.signal(START, start)
    signal.signal(STOP, stop)
    from streams.cli import main as cityloop

    cityloop(prog_name="cityloop")


if __name__ == "__main__":
    main()
