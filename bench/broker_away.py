"""The broker goes away under a running worker: how much it logs, whether it is ready, how long a stop takes.

A worker runs on a private Tansu and a private Redis and processes a few hundred reports; then the broker is
SIGKILLed (``kill``: connections refused), SIGSTOPped (``stop``: a hung broker, connections accepted, nothing
answers), or SIGKILLed and started again a second later on the same port (``restart``: the dev broker's restart,
which keeps nothing: no topics, no groups). For ``--window`` seconds the worker's log is read and its ``/health``
(``/readyz``'s older name, on every tree) probed every second; then the worker gets SIGTERM (or SIGINT, as Ctrl-C
sends) and the time until it exits is taken (given up on after ``--give-up`` seconds, and SIGKILLed).
``--source`` runs the worker from another checkout of CityLoop (``git archive <commit> | tar -x -C DIR``), to
compare with an earlier version on the same machine.

    python -m bench.broker_away [--away kill,stop,restart] [--signal TERM] [--window 30] [--source DIR]
                                [--worker-args=--verbose] [--load 500] [--json out.json]

Printed per case: WARNING and ERROR log lines per second while the broker was away (traceback lines not counted),
the most frequent of them, the readiness probes that answered 503, the seconds from the signal to the exit and
the exit status.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from bench.common import encoded, free_port, redis_server, report_records
from streams.devbroker import start_broker

LEVEL = re.compile(r"\[(WARNING|ERROR)\]|^\S+ \S+ (WARNING|ERROR) ")  # Faust's text lines; the API's basicConfig


def probe(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if LEVEL.search(line)]


def kind(line: str) -> str:
    """A line without its time, pid and numbers: lines of one kind look alike."""
    line = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)
    return re.sub(r"\d+", "N", line)[:110]


def steady(producer: KafkaProducer, topic: str, rate: float, prefix: str, sending: threading.Event) -> None:
    """``rate`` reports a second, in tenths of a second, while ``sending`` is set (sends to a broker gone fail)."""
    records = encoded(report_records(int(rate * 600), f"{prefix}-load", seed=2), "report_id")
    started, sent = time.monotonic(), 0
    while sending.is_set() and sent < len(records):
        due = int((time.monotonic() - started) * rate)
        for key, value in records[sent:due]:
            try:
                producer.send(topic, key=key, value=value)
            except Exception:  # noqa: BLE001, S112 - the broker is gone: the worker's side is what is measured
                continue
        sent = max(sent, due)
        time.sleep(0.1)


def one_case(away: str, signum: int, window_s: float, give_up_s: float, source: Path, workdir: Path,
             redis_url: str, worker_args: list[str], load: float) -> dict[str, Any]:  # fmt: skip
    broker = start_broker("127.0.0.1", free_port(), workdir / f"broker-{away}.log")
    prefix = f"away{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**os.environ, "CITYLOOP_KAFKA_BOOTSTRAP": broker.bootstrap, "CITYLOOP_REDIS_URL": redis_url,
           "CITYLOOP_TOPIC_PREFIX": prefix, "CITYLOOP_WEB_PORT": str(port), "CITYLOOP_DATA_DIR": str(workdir / prefix),
           "CITYLOOP_GROUP_SESSION_TIMEOUT_S": "2", "PYTHONPATH": str(source)}  # fmt: skip
    log_path = workdir / f"worker-{away}-{signal.Signals(signum).name}.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", *worker_args], cwd=source, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    ready_url = f"http://127.0.0.1:{port}/health"  # /readyz's older name: the same answer on both trees
    try:
        deadline = time.monotonic() + 120
        while probe(ready_url) != 200:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        for key, value in encoded(report_records(300, prefix), "report_id"):
            producer.send(f"{prefix}.reports", key=key, value=value)
        producer.flush()
        time.sleep(3)  # processed by now (300 reports take well under a second)
        sending = threading.Event()
        if load:  # a steady stream up to the moment the broker goes: batches are in flight then
            sending.set()
            threading.Thread(target=steady, args=(producer, f"{prefix}.reports", load, prefix, sending),
                             daemon=True).start()  # fmt: skip
            time.sleep(3)
        os.kill(broker.pid, signal.SIGKILL if away in ("kill", "restart") else signal.SIGSTOP)
        if away == "restart":  # the dev broker's restart: the same port, and empty (Tansu keeps nothing)
            host, _, port_text = broker.bootstrap.rpartition(":")
            time.sleep(1.0)
            broker = start_broker(host, int(port_text), workdir / f"broker-{away}-again.log")
        before = len(log_path.read_text(errors="replace"))
        started = time.monotonic()
        probes: list[int | None] = []
        while time.monotonic() - started < window_s:
            probes.append(probe(ready_url))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))
        sending.clear()
        try:
            producer.close(timeout=1)
        except Exception:  # noqa: BLE001, S110 - records it could not deliver to a broker that is gone
            pass
        away_text = log_path.read_text(errors="replace")[before:]
        lines = warning_lines(away_text)
        signalled = time.monotonic()
        worker.send_signal(signum)
        try:
            code: int | str = worker.wait(timeout=give_up_s)
            took: float | str = round(time.monotonic() - signalled, 1)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            code, took = "SIGKILLed", f"> {give_up_s:g} (gave up)"
        tail = log_path.read_text(errors="replace")[before + len(away_text) :]
        return {
            "away": away,
            "worker_args": " ".join(worker_args),
            "load_per_s": load,
            "signal": signal.Signals(signum).name,
            "warning_error_lines_per_s": round(len(lines) / window_s, 1),
            "lines_in_window": len(lines),
            "all_log_lines_per_s": round(len(away_text.splitlines()) / window_s, 1),
            "top_kinds": collections.Counter(kind(line) for line in lines).most_common(4),
            "readiness_503": f"{sum(p == 503 for p in probes)}/{len(probes)}",
            "exit_after_s": took,
            "exit_status": code,
            "abandoned_line": next((line for line in tail.splitlines() if "abandoned:" in line), None),
            "log": str(log_path),
        }
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(broker.pid, sig)
            except ProcessLookupError:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--away", default="kill,stop,restart", help="kill, stop, restart (comma separated)")
    parser.add_argument("--signal", default="TERM", choices=["TERM", "INT"])
    parser.add_argument("--window", type=float, default=30.0, help="seconds the broker is away before the signal")
    parser.add_argument("--give-up", type=float, default=240.0, help="seconds to wait for the exit before SIGKILL")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--worker-args", default="", help="more arguments for `cityloop worker`, e.g. --verbose")
    parser.add_argument("--load", type=float, default=0.0, help="reports a second sent until the broker goes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signum = signal.SIGTERM if args.signal == "TERM" else signal.SIGINT
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-broker-away-"))
    results = []
    with redis_server("redis://127.0.0.1:1/0") as redis_url:  # port 1: never answers, so a private embedded Redis
        for away in args.away.split(","):
            result = one_case(away, signum, args.window, args.give_up, args.source.resolve(), workdir, redis_url,
                              args.worker_args.split(), args.load)  # fmt: skip
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
