"""``cityloop dev``: start, stop and check the local dev runtime (a broker, and Redis if none answers).

``dev up`` starts Tansu (or Apache Kafka with ``--kafka``) and, when no Redis
answers, an embedded one, and keeps their pids and addresses in a small state
file under the data dir; ``dev down`` stops what that file names (only when the
pid still runs the program it started) and ``dev status`` says whether both
answer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from streams.console import PORT, settings_from_flags

DEV_STATE = "dev.json"


@click.group()
def dev() -> None:
    """Start and stop the local dev runtime (Tansu broker, and Redis if none answers)."""


def _state_path(data_dir: Path) -> Path:
    return data_dir / DEV_STATE


def _read_state(state_file: Path) -> dict[str, Any] | None:
    """What `dev up` wrote, or None when there is no state file; a damaged one is a one-line error."""
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
        valid = (
            isinstance(state, dict)
            and isinstance(state.get("bootstrap"), str)
            and isinstance(state.get("redis_url"), str)
            and all(isinstance(state.get(k), int) and state[k] > 0 for k in ("broker_pid", "redis_pid") if k in state)
            and "broker_pid" in state
        )
    except (OSError, ValueError):
        valid = False
    if not valid:
        raise click.ClickException(
            f"the dev state file {state_file} is damaged; stop any broker or Redis it started by hand, then delete it"
        )
    return state  # type: ignore[no-any-return]


def _ours(pid: int, program: str) -> bool:
    """True when ``pid`` runs and is ``program`` (a pid from an old state file may belong to another process now)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one `dev up` started
    try:
        return program in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc here: trust the pid


PROGRAMS = {"broker_pid": "tansu", "redis_pid": "redis-server"}


def _program(state: dict[str, Any], name: str) -> str:
    """What the process behind a pid of the state file runs (the broker may be Tansu or Apache Kafka)."""
    return str(state.get("broker_program", PROGRAMS[name])) if name == "broker_pid" else PROGRAMS[name]


@dev.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the broker listens on.")
@click.option("--port", default=9092, show_default=True, type=PORT, help="Broker port.")
@click.option("--redis", "redis_url", help="Redis to use or start [env CITYLOOP_REDIS_URL].")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where state and logs go [default .cityloop].")
@click.option(
    "--kafka",
    "apache_kafka",
    is_flag=True,
    help="Start Apache Kafka (one KRaft node; needs java, and mvn the first time) instead of Tansu.",
)
def dev_up(host: str, port: int, redis_url: str | None, data_dir: Path | None, apache_kafka: bool) -> None:
    """Start the dev broker on HOST:PORT and make sure a Redis answers (an embedded one starts if none does).

    The broker is Tansu, in memory, ready in milliseconds; with --kafka it is
    Apache Kafka itself (transactions, real offsets), ready in a few seconds.
    Either starts empty each time.
    """
    from streams.devbroker import DevBroker, start_broker
    from streams.redisconn import redis_answers, start_embedded_redis

    settings = settings_from_flags(redis_url=redis_url, data_dir=data_dir)
    state_file = _state_path(settings.data_dir)
    previous = _read_state(state_file)
    if previous is not None and _ours(previous["broker_pid"], _program(previous, "broker_pid")):
        raise click.ClickException(
            f"the dev runtime is already up (broker {previous['bootstrap']}, pid {previous['broker_pid']}); "
            "`cityloop dev down` stops it"
        )
    logs = settings.data_dir / "logs"
    if apache_kafka:
        from streams.apachekafka import KAFKA_VERSION, start_apache_kafka

        click.echo(f"starting Apache Kafka {KAFKA_VERSION} (a few seconds; the first time Maven fetches its jars) ...")
        node = start_apache_kafka(settings.data_dir / "kafka", logs / "broker.log", host=host, port=port)
        broker, name, program = DevBroker(node.bootstrap, node.pid), f"Apache Kafka {KAFKA_VERSION}", "kafka.Kafka"
    else:
        broker, name, program = start_broker(host, port, logs / "broker.log"), "Tansu", PROGRAMS["broker_pid"]
    try:
        state: dict[str, Any] = {"bootstrap": broker.bootstrap, "broker_pid": broker.pid, "broker_program": program,
                                 "redis_url": settings.redis_url}  # fmt: skip
        if redis_answers(settings.redis_url):
            redis_note = f"Redis at {settings.redis_url} answers; using it"
        else:
            embedded = start_embedded_redis(settings.redis_url, settings.data_dir / "redis", logs / "redis.log")
            state["redis_pid"] = embedded.pid
            redis_note = (
                f"no Redis answered at {settings.redis_url}; started an embedded one there (pid {embedded.pid})"
            )
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2))
    except BaseException:  # whatever stopped it, the broker it started does not outlive it
        _stop_pid(broker.pid)
        raise
    click.echo(f"broker: {name} at {broker.bootstrap} (pid {broker.pid}, log {logs / 'broker.log'})")
    click.echo(f"redis:  {redis_note}")
    # Tansu takes a short group session (joins last half of it): workers on it restart in about 3 s instead of 6
    session = "" if apache_kafka else " CITYLOOP_GROUP_SESSION_TIMEOUT_S=2"
    # CITYLOOP_DEV=1: this is a development runtime, so `cityloop api` may accept the development Open311 api_key
    click.echo(
        f"export CITYLOOP_KAFKA_BOOTSTRAP={broker.bootstrap} CITYLOOP_REDIS_URL={settings.redis_url}{session}"
        " CITYLOOP_DEV=1"
    )


def _stop_pid(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # not our child (started by an earlier `dev up`)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@dev.command("down")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where `dev up` kept its state [default .cityloop].")
def dev_down(data_dir: Path | None) -> None:
    """Stop what `cityloop dev up` started."""
    settings = settings_from_flags(data_dir=data_dir)
    state_file = _state_path(settings.data_dir)
    state = _read_state(state_file)
    if state is None:
        click.echo("the dev runtime is not up (no state file)")
        return
    for name in PROGRAMS:
        pid = state.get(name)
        if pid and _ours(pid, _program(state, name)):
            _stop_pid(pid)
            click.echo(f"stopped {name.removesuffix('_pid')} (pid {pid})")
    state_file.unlink()


@dev.command("status")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where `dev up` kept its state [default .cityloop].")
def dev_status(data_dir: Path | None) -> None:
    """Say whether the dev runtime is up and where (exit 0 when both answer, 1 otherwise)."""
    from streams.redisconn import redis_answers

    settings = settings_from_flags(data_dir=data_dir)
    state = _read_state(_state_path(settings.data_dir))
    if state is None:
        click.echo("down")
        sys.exit(1)
    broker_ok = _ours(state["broker_pid"], _program(state, "broker_pid"))
    redis_ok = redis_answers(state["redis_url"])
    click.echo(f"broker {state['bootstrap']}: {'up' if broker_ok else 'DOWN'}")
    click.echo(f"redis {state['redis_url']}: {'answers' if redis_ok else 'NOT ANSWERING'}")
    sys.exit(0 if broker_ok and redis_ok else 1)
