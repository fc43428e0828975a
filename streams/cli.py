"""The ``cityloop`` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from streams.console import (
    DEBUG_KEY,
    LATITUDE,
    LONGITUDE,
    PORT,
    RATE,
    SECONDS,
    CliGroup,
    deployment_options,
    quiet_client_libraries,
    settings_from_flags,
)
from streams.settings import Settings

DEV_STATE = "dev.json"


def _settings(**flags: Any) -> Settings:
    return settings_from_flags(**flags)  # type: ignore[no-any-return]


def _load_pack(settings: Settings) -> Any:
    from streams.cli_city import load_pack

    return load_pack(settings.city)


VERBOSE = click.option(
    "--verbose", is_flag=True, help="Also show the Kafka and Faust client libraries' logs (connections, group joins)."
)
API_VERBOSE = click.option("--verbose", is_flag=True, help="Also show the Kafka client library's logs.")


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--debug",
    is_flag=True,
    envvar="CITYLOOP_DEBUG",
    help="Show tracebacks and every client library's log [env CITYLOOP_DEBUG=1].",
)
@click.version_option(package_name="cityloop")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """CityLoop: citizen reports and sensor readings in, one task per real-world problem out.

    \b
    See it work, everything on this machine (about 80 seconds):
      cityloop demo          # broker, Redis, a worker, the API and a simulated city
    \b
    Piece by piece:
      cityloop dev up        # start the dev Kafka broker (and Redis if none answers)
      cityloop worker        # run the pipeline on the generated demo city
      cityloop report --text "pothole outside the school" --lat 51.99 --lon 5.06
      cityloop tail tasks    # watch assignments arrive

    Every flag can also be set as a CITYLOOP_* environment variable. A failure
    is one line saying what failed and what to do; --debug adds the traceback.
    """
    ctx.meta[DEBUG_KEY] = debug
    if not debug:
        quiet_client_libraries()


@main.command()
@deployment_options("kafka", "redis", "city", "prefix", "partitions", "wait")
@click.option("--web-port", type=int, help="Port of /metrics and /health [env CITYLOOP_WEB_PORT; default 6066].")
@click.option("--batch-size", type=int, help="Max records per batch [env CITYLOOP_BATCH_SIZE; default 500].")
@click.option(
    "--model",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Text model file from `cityloop train` [env CITYLOOP_MODEL; default: the demo city's seed model].",
)
@click.option(
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="CityLoop's own log level.",
)
@VERBOSE
@click.pass_context
def worker(ctx: click.Context, loglevel: str, verbose: bool, **flags: Any) -> None:
    """Run a stream worker: ingest, discover, dispatch, emit tasks, keep the SLA clocks.

    Start as many as there are partitions; they share the work as one consumer
    group. Stop with Ctrl-C or SIGTERM: in-flight batches finish first. It
    logs its own start-up, readiness and warnings; --verbose adds the client
    libraries'. Its files go under CITYLOOP_DATA_DIR.
    """

    from streams.admin import ensure_topics
    from streams.connect import wait_for_kafka, wait_for_redis
    from streams.redisconn import port_in_use
    from streams.topics import Topics

    settings = _settings(**flags)
    verbose = verbose or bool(ctx.meta.get(DEBUG_KEY))
    if settings.web_port and port_in_use(settings.web_host, settings.web_port):
        raise click.ClickException(
            f"port {settings.web_port} on {settings.web_host} is in use (another worker?); "
            "choose another with --web-port or CITYLOOP_WEB_PORT"
        )
    if settings.model is not None and not settings.model.is_file():
        raise click.UsageError(
            f"no model file at {settings.model} (--model / CITYLOOP_MODEL); `cityloop train` makes one"
        )
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        quiet_client_libraries(logging.NOTSET)
    pack = _load_pack(settings)
    wait_for_redis(settings.redis_url, settings.connect_timeout_s)
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    created = ensure_topics(
        settings.kafka, Topics(settings.topic_prefix).all(), settings.partitions, settings.replication_factor,
        timeout=settings.connect_timeout_s,
    )  # fmt: skip
    if settings.processing_guarantee == "exactly_once":
        _check_transactions(settings)
    from streams.app import QuietWorker, create_app

    click.echo(f"worker for {pack.name} (pack {pack.version}), topics {settings.topic_prefix}.*", err=True)
    click.echo(f"  kafka   {settings.kafka.describe()}" + (f" (created {len(created)} topics)" if created else ""),
               err=True)  # fmt: skip
    for risk in settings.kafka.risks():
        click.echo(f"  warning: {risk}", err=True)
    click.echo(f"  redis   {settings.redis_url}", err=True)
    click.echo(f"  model   {settings.model or 'seed (the demo city categories)'}", err=True)
    click.echo(f"  output  {settings.processing_guarantee.replace('_', ' ')}", err=True)
    if settings.processing_guarantee == "exactly_once" and not settings.worker_id:
        click.echo("  warning: no CITYLOOP_WORKER_ID, so a restart cannot abort a transaction a crash left open: "
                   "read_committed readers of its partitions wait up to 15 s", err=True)  # fmt: skip
    click.echo(f"  web     http://{settings.web_host}:{settings.web_port}/metrics and /health", err=True)
    click.echo(f"  files   {settings.data_dir.resolve()}", err=True)
    app = create_app(settings, pack)
    QuietWorker(app, loglevel=loglevel, quiet=True, verbose=verbose).execute_from_commandline()


def _check_transactions(settings: Settings) -> None:
    """exactly_once needs a broker with transactions: find out before the worker starts, in one line if not."""
    import asyncio

    from streams.sinks import TransactionalSink

    async def probe() -> None:
        sink = TransactionalSink(settings.kafka, f"{settings.consumer_group}-probe")
        await sink.start()
        await sink.stop()

    library = logging.getLogger("aiokafka")
    level = library.level
    library.setLevel(logging.CRITICAL)  # its error line would say the same as ours, less clearly
    loop = asyncio.new_event_loop()  # not asyncio.run: it would leave the main thread without the loop Faust takes
    try:
        loop.run_until_complete(probe())
    finally:
        loop.close()
        library.setLevel(level)


@main.command()
@deployment_options("kafka", "redis", "city", "prefix", "partitions", "wait")
@click.option("--host", "api_host", help="Interface to bind [env CITYLOOP_API_HOST; default: CITYLOOP_WEB_HOST].")
@click.option("--port", "api_port", type=int, help="Port [env CITYLOOP_API_PORT; default 8080].")
@click.option("--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@API_VERBOSE
def api(loglevel: str, verbose: bool, **flags: Any) -> None:
    """Serve the HTTP API: Open311 GeoReport v2, field units' tasks, the ops centre (OpenAPI at /docs).

    It reads Redis and writes reports and lifecycle events to Kafka; run at
    least one `cityloop worker` with the same settings to act on them.
    """
    import uvicorn

    from streams.admin import ensure_topics
    from streams.api import create_api
    from streams.api.serve import GracefulServer
    from streams.connect import wait_for_kafka, wait_for_redis
    from streams.redisconn import port_in_use
    from streams.topics import Topics

    settings = _settings(**flags)
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        quiet_client_libraries(logging.NOTSET)
    if settings.api_port and port_in_use(settings.api_bind_host, settings.api_port):
        raise click.ClickException(f"port {settings.api_port} on {settings.api_bind_host} is in use; choose --port")
    pack = _load_pack(settings)
    wait_for_redis(settings.redis_url, settings.connect_timeout_s)
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    ensure_topics(
        settings.kafka, Topics(settings.topic_prefix).all(), settings.partitions, settings.replication_factor,
        timeout=settings.connect_timeout_s,
    )  # fmt: skip
    where = f"http://{settings.api_bind_host}:{settings.api_port}"
    click.echo(f"API for {pack.name} on {where} (OpenAPI at /docs)", err=True)
    for risk in settings.kafka.risks():
        click.echo(f"warning: {risk}", err=True)
    config = uvicorn.Config(create_api(settings, pack), host=settings.api_bind_host, port=settings.api_port,
                            log_level=loglevel, server_header=False)  # fmt: skip
    GracefulServer(config).run()


@main.group()
def units() -> None:
    """Field units: issue and revoke their API tokens."""


@units.command("token")
@deployment_options("redis", "city", "prefix", "wait")
@click.argument("unit_id")
@click.option("--holder", help="Who or what carries the token (a person, a tablet); recorded with their actions.")
@click.option("--revoke", is_flag=True, help="Revoke every token of UNIT_ID instead of issuing one.")
def units_token(unit_id: str, holder: str | None, revoke: bool, **flags: Any) -> None:
    """Issue an API token for UNIT_ID (printed once; only its hash is stored), or revoke its tokens.

    The ops centre (the city pack's fallback unit) gets the token for the /ops routes the same way.
    """
    import asyncio
    from datetime import datetime

    import redis.asyncio as aioredis

    from streams.api.store import ApiStore
    from streams.connect import wait_for_redis

    settings = _settings(**flags)
    pack = _load_pack(settings)
    if pack.unit(unit_id) is None:
        known = ", ".join(u.id for u in pack.spec.units)
        raise click.UsageError(f"unknown unit {unit_id!r}; {pack.name} has: {known}")
    wait_for_redis(settings.redis_url, settings.connect_timeout_s)

    async def run() -> str | int:
        client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            store = ApiStore(client, settings.redis_namespace)
            if revoke:
                return await store.revoke_tokens(unit_id)
            return await store.issue_token(unit_id, holder or unit_id, datetime.now(UTC))
        finally:
            await client.aclose()

    outcome = asyncio.run(run())
    if revoke:
        click.echo(f"revoked {outcome} token(s) of {unit_id}")
    else:
        click.echo(outcome)


@main.command()
@click.option("--duration", default=60.0, show_default=True, type=SECONDS, help="Seconds of simulated city.")
@click.option("--rate", default=50.0, show_default=True, type=RATE, help="Reports per second.")
@click.option(
    "--sensors", default=40, show_default=True, type=click.IntRange(0, 5000), help="Sensors (a reading a second each)."
)
@click.option(
    "--web-port", default=6066, show_default=True, type=PORT, help="Port of the worker's /metrics and /health."
)
@click.option(
    "--api-port", default=8080, show_default=True, type=PORT, help="Port of the HTTP API (Open311, units, ops)."
)
@click.option("--kafka", "kafka_bootstrap", help="Use this broker instead of starting the embedded one.")
@click.option(
    "--redis", "redis_url", help="Redis to use [env CITYLOOP_REDIS_URL]; an embedded one starts if it does not answer."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Logs and generated files [default .cityloop].")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the summary as JSON here.")
@click.option(
    "--keep-running", is_flag=True, help="After the summary, keep everything up (to try the board) until Ctrl-C."
)
def demo(
    duration: float,
    rate: float,
    sensors: int,
    web_port: int,
    api_port: int,
    kafka_bootstrap: str | None,
    redis_url: str | None,
    data_dir: Path | None,
    json_out: Path | None,
    keep_running: bool,
) -> None:
    """Run the whole loop on this machine: broker, Redis, a worker, the HTTP API and a simulated city.

    Residents report problems (several per problem, some garbage, some resent),
    sensors cycle through the day with injected floods, noise and smog; the
    worker classifies, dispatches and dead-letters; field crews acknowledge,
    sometimes reject, and resolve their tasks through the API, and a supervisor
    verifies or reopens the work. The demo city runs on demo time (an hour of
    SLA target lasts 5 seconds), so some tasks run late and escalate.

    It prints its start-up steps, a board of URLs and an ops-centre token to
    try in another terminal, a row of progress every few seconds and a summary.
    It takes about 20 seconds more than --duration. Ctrl-C (or SIGTERM) stops
    everything the demo started (exit status 130, or 143), unless --keep-running
    was given and the run had finished, when Ctrl-C is the way to end it (0).
    """
    from streams.redisconn import port_in_use

    settings = _settings(redis_url=redis_url, data_dir=data_dir, kafka_bootstrap=kafka_bootstrap)
    if port_in_use("127.0.0.1", web_port):
        raise click.UsageError(f"port {web_port} is in use; choose another with --web-port")
    if port_in_use("127.0.0.1", api_port):
        raise click.UsageError(f"port {api_port} is in use; choose another with --api-port")
    click.echo(f"cityloop demo: {duration:g} s of a simulated city on this machine; Ctrl-C stops it all")
    from streams.demo import run_demo  # a second of imports: after the first line, not before

    summary = run_demo(
        duration=duration,
        rate=rate,
        sensors=sensors,
        data_dir=settings.data_dir,
        web_port=web_port,
        api_port=api_port,
        kafka=settings.kafka if kafka_bootstrap else None,  # with the CITYLOOP_KAFKA_* security settings
        redis_url=settings.redis_url,
        echo=click.echo,
        keep_running=keep_running,
    )
    if json_out:
        json_out.write_text(json.dumps(summary, indent=2))
    if summary["interrupted"]:
        sys.exit(128 + (summary["signal"] or signal.SIGINT))


@main.command()
@deployment_options("kafka", "city", "prefix", "wait")
@click.option("--rate", default=100.0, show_default=True, type=RATE, help="Citizen reports per second.")
@click.option("--duration", default=60.0, show_default=True, type=SECONDS, help="Seconds to run.")
@click.option(
    "--sensors",
    default=100,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Sensors, a reading a second each.",
)
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed (the same seed, the same city).")
def simulate(rate: float, duration: float, sensors: int, seed: int, **flags: Any) -> None:
    """Play the simulated city into any deployment's topics: a load test or a smoke test.

    Reports (repeats of the same problems, some garbage, some resent) and sensor
    readings (daily cycles with injected excursions) fall inside the city pack's
    area and use the demo city's categories and sensor kinds. Only writes: watch
    the results with `cityloop tail`, the metrics or the API.
    """
    import uuid

    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from streams.connect import KAFKA_HINT, ClientLog, Unreachable, unreachable, wait_for_kafka
    from streams.simulator import CitySimulator, play
    from streams.topics import Topics

    settings = _settings(**flags)
    pack = _load_pack(settings)
    bounds = _pack_bounds(pack)
    topics = Topics(settings.topic_prefix)
    simulator = CitySimulator(bounds, f"sim{uuid.uuid4().hex[:6]}", seed=seed, sensors_count=sensors)
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    bound_ms = max(int(settings.connect_timeout_s * 1000), 1000)
    with ClientLog() as said:
        try:
            producer = KafkaProducer(**settings.kafka.kafka_python(), acks="all", linger_ms=5,
                                     max_block_ms=bound_ms, bootstrap_timeout_ms=bound_ms)  # fmt: skip
        except KafkaError as exc:
            raise unreachable(settings.kafka, exc, said) from None
    counts = {"reports": 0, "garbage": 0, "readings": 0}
    last_print = -1.0
    interrupted = False
    click.echo(f"simulating {pack.name} into {topics.prefix}.* on {settings.kafka.describe()} for {duration:g} s")
    try:
        for elapsed, reports, readings in play(simulator, rate, duration):
            for record in reports:
                producer.send(topics.reports, key=record.key, value=record.value)
                counts["reports" if record.valid else "garbage"] += 1
            for record in readings:
                producer.send(topics.readings, key=record.key, value=record.value)
                counts["readings"] += 1
            if elapsed - last_print >= 5.0:
                last_print = elapsed
                click.echo(f"  t={elapsed:5.1f}s  " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    except KeyboardInterrupt:
        interrupted = True
        click.echo("interrupted: sending what is buffered, then stopping")
    except KafkaError as exc:
        raise Unreachable(
            f"the broker at {settings.kafka.describe()} stopped taking records ({exc}); {KAFKA_HINT}"
        ) from None
    finally:
        producer.flush(timeout=max(settings.connect_timeout_s, 10))
        producer.close(timeout=max(settings.connect_timeout_s, 10))
    click.echo("sent: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if interrupted:
        sys.exit(130)


def _pack_bounds(pack: Any) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) over every layer of a pack."""
    import shapely

    boxes = [shapely.total_bounds(layer.geometries) for layer in pack.layers.values()]
    return (
        float(min(b[0] for b in boxes)),
        float(min(b[1] for b in boxes)),
        float(max(b[2] for b in boxes)),
        float(max(b[3] for b in boxes)),
    )


# --------------------------------------------------------------------------- dev


@main.group()
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

    settings = _settings(redis_url=redis_url, data_dir=data_dir)
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
    click.echo(f"export CITYLOOP_KAFKA_BOOTSTRAP={broker.bootstrap} CITYLOOP_REDIS_URL={settings.redis_url}{session}")


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
    settings = _settings(data_dir=data_dir)
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

    settings = _settings(data_dir=data_dir)
    state = _read_state(_state_path(settings.data_dir))
    if state is None:
        click.echo("down")
        sys.exit(1)
    broker_ok = _ours(state["broker_pid"], _program(state, "broker_pid"))
    redis_ok = redis_answers(state["redis_url"])
    click.echo(f"broker {state['bootstrap']}: {'up' if broker_ok else 'DOWN'}")
    click.echo(f"redis {state['redis_url']}: {'answers' if redis_ok else 'NOT ANSWERING'}")
    sys.exit(0 if broker_ok and redis_ok else 1)


# ------------------------------------------------------------------ operations


@main.group()
def topics() -> None:
    """Manage CityLoop's topics."""


@topics.command("create")
@deployment_options("kafka", "prefix", "partitions", "replication", "wait")
def topics_create(**flags: Any) -> None:
    """Create the six topics of the stream contract if they do not exist."""
    from streams.admin import ensure_topics
    from streams.connect import wait_for_kafka
    from streams.topics import Topics

    settings = _settings(**flags)
    names = Topics(settings.topic_prefix).all()
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    created = ensure_topics(
        settings.kafka, names, settings.partitions, settings.replication_factor, timeout=settings.connect_timeout_s
    )
    for name in names:
        click.echo(f"{name}: {'created' if name in created else 'exists'}")


@main.command()
@deployment_options("kafka", "prefix", "wait")
@click.option("--text", required=True, help="What the resident says (at most 4,000 characters).")
@click.option("--lat", required=True, type=LATITUDE, help="Latitude, WGS 84 decimal degrees.")
@click.option("--lon", required=True, type=LONGITUDE, help="Longitude, WGS 84 decimal degrees.")
@click.option("--service-code", help="Category code, if the reporter chose one.")
@click.option("--source", default="staff", show_default=True, help="Channel the report came in on.")
@click.option("--id", "report_id", help="Report id, 1-128 printable characters [default: generated].")
def report(
    text: str, lat: float, lon: float, service_code: str | None, source: str, report_id: str | None, **flags: Any
) -> None:
    """Write one citizen report to the reports topic (a smoke test for a deployment); prints its id."""
    import uuid
    from datetime import datetime

    from streams.connect import produce_one
    from streams.topics import Topics

    if not text.strip():
        raise click.UsageError("--text is empty: say what the problem is")
    if len(text) > 4000:
        raise click.UsageError(f"--text has {len(text)} characters; a report has at most 4,000")
    if report_id is not None and not (0 < len(report_id) <= 128 and report_id.isprintable()):
        raise click.UsageError("--id must be 1 to 128 printable characters")
    settings = _settings(**flags)
    record = {
        "report_id": report_id or f"cli-{uuid.uuid4()}",
        "source": source,
        "text": text,
        "lat": lat,
        "lon": lon,
        "reported_at": datetime.now(UTC).isoformat(),
    }
    if service_code:
        record["service_code"] = service_code
    topic = Topics(settings.topic_prefix).reports
    produce_one(
        settings.kafka, topic, record["report_id"].encode(), json.dumps(record).encode(),
        settings.connect_timeout_s,
    )  # fmt: skip
    click.echo(record["report_id"])


@main.command()
@deployment_options("kafka", "prefix", "wait")
@click.argument("stream", type=click.Choice(["reports", "readings", "incidents", "tasks", "feedback", "deadletter"]))
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the newest.")
@click.option("--max", "limit", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--timeout", type=SECONDS, help="Stop after this many seconds without a record.")
def tail(stream: str, from_beginning: bool, limit: int | None, timeout: float | None, **flags: Any) -> None:
    """Print the records of one stream as JSON lines (on stdout; what it follows goes to stderr)."""
    from streams.connect import topic_consumer
    from streams.topics import Topics

    settings = _settings(**flags)
    topic = getattr(Topics(settings.topic_prefix), stream)
    consumer: Any = topic_consumer(
        settings.kafka,
        topic,
        settings.connect_timeout_s,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",  # an exactly-once deployment's aborted attempts are not output
        consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),
    )
    where = "from the oldest record" if from_beginning else "from now on"
    click.echo(f"following {topic} at {settings.kafka.describe()} {where}; Ctrl-C stops", err=True)
    count = 0
    try:
        for message in consumer:
            click.echo(message.value.decode("utf-8", errors="replace"))
            count += 1
            if limit and count >= limit:
                break
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        consumer.close()


from streams.cli_city import city, route  # noqa: E402  (registered on the group defined above)

main.add_command(route)
main.add_command(city)


from streams.triagecli import triage  # noqa: E402 - registered after the group exists

main.add_command(triage)

from streams.modelcli import eval_ as eval_command, train  # noqa: E402, I001

main.add_command(train)
main.add_command(eval_command, name="eval")

if __name__ == "__main__":
    main(prog_name="cityloop")
