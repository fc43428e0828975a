"""`cityloop demo`: the whole loop on one machine with nothing to configure.

Starts the embedded broker, finds or starts Redis, runs a real worker process
and the HTTP API, plays the simulated city into them (residents and sensors on
the streams, field crews and an ops-centre supervisor on the API), watches the
output streams like an operations centre would, and prints a summary.
Everything it started is stopped on exit, Ctrl-C included. This module starts
and stops the processes; what the demo sends and sees is in
:mod:`streams.demotraffic`.

The demo city runs on demo time: its SLA targets are compressed so that an hour
of target is a few seconds (``SECONDS_PER_HOUR``), and crews take seconds, so
within a minute some tasks are late, warn and escalate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.admin import ensure_topics
from streams.democrews import Crews, demo_time_pack
from streams.demotraffic import Observed, Observer, Sent, drain, full_summary, play_city
from streams.demoview import board, step, summary_lines
from streams.devbroker import start_broker
from streams.errors import FailedToStart
from streams.kafkaaccess import KafkaAccess
from streams.redisconn import last_lines, redis_answers, start_embedded_redis
from streams.topics import Topics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SECONDS_PER_HOUR = 5.0  # demo time: an hour of SLA target lasts this many seconds


def _wait_ready(
    what: str, url: str, ready: Callable[[bytes], bool], process: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    """Poll ``url`` until it answers 200 with a body ``ready`` accepts; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = last_lines(log, 2).replace("Error: ", "")
            raise FailedToStart(f"the {what} exited with code {process.returncode}: {said or 'no output'} (log {log})")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200 and ready(response.read()):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise FailedToStart(f"the {what} was not ready within {timeout:.0f} s (log {log})")


def run_demo(
    *,
    duration: float,
    rate: float,
    sensors: int,
    data_dir: Path,
    web_port: int,
    api_port: int,
    kafka: KafkaAccess | None,
    redis_url: str,
    echo: Callable[[str], None],
    keep_running: bool = False,
) -> dict[str, Any]:
    """Run the demo and return its summary (also printed through ``echo``).

    Ctrl-C stops everything the demo started and returns a summary marked
    ``interrupted``, in which records still in flight are not counted as lost.
    """
    data_dir = data_dir.resolve()  # the worker and the API run with this too, whatever their working directory
    run_id = uuid.uuid4().hex[:6]
    topics = Topics(f"demo{run_id}")
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cleanup: list[Callable[[], None]] = []
    started_pids: list[int] = []
    sent, seen = Sent(), Observed()
    observer: Observer | None = None
    crews: Crews | None = None
    board_args: dict[str, Any] | None = None
    finished, interrupted = False, False
    stopped_by = _stop_on_signals()
    try:
        echo("starting up:")
        clock = time.monotonic()
        own_broker = kafka is None
        if kafka is None:
            broker = start_broker("127.0.0.1", free_port(), logs / f"demo-{run_id}-broker.log")
            kafka = KafkaAccess(broker.bootstrap)
            cleanup.append(lambda: _terminate(broker.pid))
            started_pids.append(broker.pid)
            echo(step("broker", f"Tansu (embedded) at {kafka.bootstrap}", time.monotonic() - clock))
        else:
            echo(step("broker", kafka.describe()))
        clock = time.monotonic()
        if redis_answers(redis_url):
            echo(step("redis", redis_url))
        else:
            echo(step("redis", f"none answers at {redis_url}"))
            redis_dir = data_dir / f"demo-{run_id}-redis"
            embedded = start_embedded_redis(
                f"redis://127.0.0.1:{free_port()}/0", redis_dir, logs / f"demo-{run_id}-redis.log"
            )
            cleanup.append(lambda: shutil.rmtree(redis_dir, ignore_errors=True))
            cleanup.append(lambda: _terminate(embedded.pid))
            started_pids.append(embedded.pid)
            echo(step("redis", f"embedded at {embedded.url}", time.monotonic() - clock))
            redis_url = embedded.url
        cleanup.append(lambda: _forget_namespace(redis_url, topics.prefix))
        ensure_topics(kafka, topics.all(), partitions=4, timeout=15)
        city = write_demo_city(data_dir / f"demo-city-{run_id}")
        demo_time_pack(city, SECONDS_PER_HOUR)
        cleanup.append(lambda: shutil.rmtree(city, ignore_errors=True))
        pack = load_city_pack(city)
        echo(step("city", f"{pack.name}; demo time: an hour of SLA target lasts {SECONDS_PER_HOUR:g} s"))
        env = _child_env(kafka, redis_url, topics, web_port, api_port, data_dir, city, run_id)
        if own_broker:  # Tansu takes a 2 s session (and joins in half of it): the worker is ready sooner
            env["CITYLOOP_GROUP_SESSION_TIMEOUT_S"] = "2"
        processes = {}
        for command in ("worker", "api"):
            log_path = logs / f"demo-{run_id}-{command}.log"
            process = _spawn(command, env, log_path)
            cleanup.append(lambda pid=process.pid: _terminate(pid))
            started_pids.append(process.pid)
            processes[command] = (process, log_path)
        (worker, worker_log), (api, api_log) = processes["worker"], processes["api"]
        clock = time.monotonic()
        echo(step("worker", f"pid {worker.pid}; ready once it holds its partitions (a few seconds) ..."))
        health = f"http://127.0.0.1:{web_port}/health"
        _wait_ready("worker", health, lambda body: json.loads(body).get("status") == "ready", worker, 90, worker_log)
        echo(step("worker", "ready", time.monotonic() - clock))
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_ready("API", f"{api_url}/open311/v2/services.json", lambda body: True, api, 60, api_log)
        echo(step("api", f"{api_url}, pid {api.pid}"))
        tokens = _issue_tokens(redis_url, topics.prefix, [u.id for u in pack.spec.units])
        ops_unit = pack.spec.fallback_unit
        crew_unit = next((u for u in pack.spec.units if u.kind == "field_team" and u.id in tokens), None)
        echo(step("crews", f"{len(tokens)} units, each with an API token"))
        echo(step("logs", f"{logs}/demo-{run_id}-*.log"))
        board_args = {
            "api_url": api_url,
            "metrics_url": f"http://127.0.0.1:{web_port}/metrics",
            "kafka": kafka.bootstrap,
            "prefix": topics.prefix,
            "token": tokens[ops_unit],
            "crew": None if crew_unit is None else (crew_unit.name, tokens[crew_unit.id]),
        }
        for line in ["", *board(**board_args, live=True), ""]:
            echo(line)
        crews = Crews(api_url, tokens, ops_unit)
        crews.start()
        observer = Observer(kafka, topics, sent, seen, on_task=crews.new_task)
        observer.start()
        play_city(kafka, topics, sent, seen, duration, rate, sensors, run_id, echo)
        drain(kafka, topics, sent, seen, timeout=20)
        finished = True
        if keep_running:
            _print_summary(full_summary(sent, seen, crews, started_pids, False), echo)
            for line in ["", *board(**board_args, live=True), "", "still running: Ctrl-C stops everything"]:
                echo(line)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        interrupted = not finished
        echo("")
        echo("interrupted: stopping everything the demo started ..." if interrupted else "stopping everything ...")
    except BaseException:
        _stop(crews, observer, cleanup, echo)
        echo(f"stopped everything the demo started; logs in {logs}")
        raise
    _stop(crews, observer, cleanup, echo)
    summary = full_summary(sent, seen, crews, started_pids, interrupted)
    summary["signal"] = stopped_by.get("signal") if interrupted else None
    if sent.played_s and not (keep_running and finished):
        _print_summary(summary, echo)
        if board_args is not None:
            for line in ["", *board(**board_args, live=False)]:
                echo(line)
    echo("")
    echo(f"stopped everything the demo started; logs in {logs}")
    return summary


def _stop_on_signals() -> dict[str, int]:
    """Ctrl-C and SIGTERM both stop the demo the same way, everything it started included; returns which came.

    SIGINT is set explicitly: a shell starts background jobs with it ignored,
    and then Python would never raise KeyboardInterrupt.
    """
    came: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        return came

    def interrupt(signum: int, _frame: Any) -> None:
        came.setdefault("signal", signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    return came


def _child_env(kafka: KafkaAccess, redis_url: str, topics: Topics, web_port: int, api_port: int, data_dir: Path,
               city: Path, run_id: str) -> dict[str, str]:  # fmt: skip
    """The worker's and the API's settings, as the environment of their processes."""
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("CITYLOOP_KAFKA_")},
        **kafka.environment(),
        "CITYLOOP_REDIS_URL": redis_url,
        "CITYLOOP_TOPIC_PREFIX": topics.prefix,
        "CITYLOOP_WEB_PORT": str(web_port),
        "CITYLOOP_DATA_DIR": str(data_dir),
        "CITYLOOP_CITY": str(city),
        "CITYLOOP_SENSOR_QUIET_S": "10",  # a sensor incident verifies itself after 10 quiet seconds
        "CITYLOOP_API_PORT": str(api_port),
        "CITYLOOP_API_HOST": "127.0.0.1",
        "CITYLOOP_OPEN311_API_KEYS": f"demo-{run_id}",
    }


def _stop(crews: Crews | None, observer: Observer | None, cleanup: list[Callable[[], None]],
          echo: Callable[[str], None]) -> None:  # fmt: skip
    """Stop the people, the observer and every process, even through a second Ctrl-C."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: echo("still stopping; a moment ..."))
    try:
        if crews is not None:
            crews.stopping.set()
            crews.join(timeout=20)
        if observer is not None:
            observer.stopping.set()
            observer.join(timeout=5)
        for action in reversed(cleanup):
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - report and keep cleaning up
                echo(f"cleanup step failed: {exc}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _spawn(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``cityloop <command>`` in a child process, its output in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", command, "--loglevel", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the demo alone, which stops them in order
        )


def _issue_tokens(redis_url: str, namespace: str, units: list[str]) -> dict[str, str]:
    """An API token per unit of the pack (the ops centre's included), for the demo's crews."""
    import asyncio
    from datetime import UTC, datetime

    import redis.asyncio as aioredis

    from streams.api.store import ApiStore

    async def issue() -> dict[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = ApiStore(client, namespace)
            return {unit: await store.issue_token(unit, f"demo crew of {unit}", datetime.now(UTC)) for unit in units}
        finally:
            await client.aclose()

    return asyncio.run(issue())


def _print_summary(summary: dict[str, Any], echo: Callable[[str], None]) -> None:
    for line in summary_lines(summary):
        echo(line)


def _terminate(pid: int, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll for its exit
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            finished = 0
        if finished:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _forget_namespace(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
