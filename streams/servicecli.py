"""``cityloop worker``, ``cityloop api`` and ``cityloop units token``: the long-running services and their keys.

The worker runs the stream pipeline (ingest, discover, dispatch, the SLA
clocks) as one member of a consumer group; the API serves Open311, the field
units' task routes and the ops centre over HTTP. Both check their ports, the
city pack, Redis and the broker before they start and name what they run on in
a few lines on stderr. ``units token`` issues (or revokes) the API tokens that
field units and the ops centre present.
"""

from __future__ import annotations

import logging
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from streams import logs
from streams.cli_city import load_pack
from streams.console import DEBUG_KEY, deployment_options, quiet_client_libraries, settings_from_flags
from streams.settings import Settings

log = logging.getLogger("streams.cli")

VERBOSE = click.option(
    "--verbose", is_flag=True, help="Also show the Kafka and Faust client libraries' logs (connections, group joins)."
)
API_VERBOSE = click.option("--verbose", is_flag=True, help="Also show the Kafka client library's logs.")


def services_ready(settings: Any) -> list[str]:
    """Redis and the broker answer (or a one-line error after the connect timeout) and CityLoop's topics exist;
    returns the topics made now. What every long-running command checks before it starts."""
    from streams.admin import ensure_topics
    from streams.connect import wait_for_kafka, wait_for_redis
    from streams.topics import Topics

    wait_for_redis(settings.redis_url, settings.connect_timeout_s)
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    return ensure_topics(
        settings.kafka, Topics(settings.topic_prefix).all(), settings.partitions, settings.replication_factor,
        timeout=settings.connect_timeout_s,
    )  # fmt: skip


def announce(lines: list[str], log_format: str) -> None:
    """What a service runs on, at start: lines on stderr for a person, or log lines (JSON) for a collector."""
    for line in lines:
        if log_format == "json":
            log.info("%s", line.strip())
        else:
            click.echo(line, err=True)


@click.command()
@deployment_options("kafka", "redis", "city", "prefix", "partitions", "logs", "wait")
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
    group. Stop with Ctrl-C or SIGTERM: in-flight batches finish first, within
    CITYLOOP_SHUTDOWN_GRACE_S (10 s); past it, whatever the broker does, the
    worker says what it abandoned and exits 143 (130 after Ctrl-C): those
    records are read again, harmlessly. It logs its own start-up, readiness and
    warnings, a repeated warning once per CITYLOOP_LOG_REPEAT_S (10 s) with a
    count; --verbose adds the client libraries'. --log-format json: one JSON
    object per line, with the ids of the record being handled. Its files go
    under CITYLOOP_DATA_DIR.
    """

    from streams.redisconn import port_in_use

    settings = settings_from_flags(**flags)
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
    repeats = logs.configure(loglevel, settings.log_format, settings.log_repeat_s)
    if verbose:
        quiet_client_libraries(logging.NOTSET)
    pack = load_pack(settings.city)
    created = services_ready(settings)
    if settings.processing_guarantee == "exactly_once":
        _check_transactions(settings)
    from streams.app import create_app
    from streams.workerprocess import QuietWorker

    lines = [
        f"worker for {pack.name} (pack {pack.version}), topics {settings.topic_prefix}.*",
        f"  kafka   {settings.kafka.describe()}" + (f" (created {len(created)} topics)" if created else ""),
    ]
    lines += [f"  warning: {risk}" for risk in settings.kafka.risks()]
    lines += [f"  redis   {settings.redis_url}", f"  model   {settings.model or 'seed (the demo city categories)'}"]
    if settings.model_registry is not None:
        watching = f"checked every {settings.model_poll_s:g} s" if settings.model_poll_s else "read at start only"
        lines.append(f"  models  {settings.model_registry} (its current version wins; {watching})")
    lines.append(f"  output  {settings.processing_guarantee.replace('_', ' ')}")
    if settings.processing_guarantee == "exactly_once" and not settings.worker_id:
        lines.append("  warning: no CITYLOOP_WORKER_ID, so a restart cannot abort a transaction a crash left open: "
                     "read_committed readers of its partitions wait up to 15 s")  # fmt: skip
    lines += [f"  web     http://{settings.web_host}:{settings.web_port}/metrics and /health",
              f"  files   {settings.data_dir.resolve()}"]  # fmt: skip
    announce(lines, settings.log_format)
    app = create_app(settings, pack)
    QuietWorker(app, loglevel=loglevel, quiet=True, verbose=verbose, log_format=settings.log_format,
                repeats=repeats, grace_s=settings.shutdown_grace_s).execute_from_commandline()  # fmt: skip


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


@click.command()
@deployment_options("kafka", "redis", "city", "prefix", "partitions", "logs", "wait")
@click.option("--host", "api_host", help="Interface to bind [env CITYLOOP_API_HOST; default: CITYLOOP_WEB_HOST].")
@click.option("--port", "api_port", type=int, help="Port [env CITYLOOP_API_PORT; default 8080].")
@click.option("--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--dev",
    is_flag=True,
    default=None,
    help="Development mode: accept the development Open311 api_key [env CITYLOOP_DEV; never in production].",
)
@API_VERBOSE
def api(loglevel: str, verbose: bool, **flags: Any) -> None:
    """Serve the HTTP API: Open311 GeoReport v2, field units' tasks, the ops centre (OpenAPI at /docs).

    It reads Redis and writes reports and lifecycle events to Kafka; run at
    least one `cityloop worker` with the same settings to act on them. It
    refuses to start with the development Open311 api_key unless --dev.
    --log-format json: one JSON object per line (uvicorn's too), with the
    request id and the order's ids of the action being handled.
    """
    import uvicorn

    from streams.api import create_api, development_key_refusal
    from streams.api.serve import GracefulServer
    from streams.redisconn import port_in_use

    settings = settings_from_flags(**flags)
    refusal = development_key_refusal(settings)
    if refusal:
        raise click.ClickException(refusal)
    logs.configure(loglevel, settings.log_format, settings.log_repeat_s)
    if verbose:
        quiet_client_libraries(logging.NOTSET)
    if settings.api_port and port_in_use(settings.api_bind_host, settings.api_port):
        raise click.ClickException(f"port {settings.api_port} on {settings.api_bind_host} is in use; choose --port")
    pack = load_pack(settings.city)
    services_ready(settings)
    where = f"http://{settings.api_bind_host}:{settings.api_port}"
    announce([f"API for {pack.name} on {where} (OpenAPI at /docs)",
              *(f"warning: {risk}" for risk in settings.kafka.risks())], settings.log_format)  # fmt: skip
    # JSON: uvicorn's loggers keep no handlers of their own, so their lines reach the root's JSON handler
    own_logging = {"log_config": None} if settings.log_format == "json" else {}
    config = uvicorn.Config(create_api(settings, pack), host=settings.api_bind_host, port=settings.api_port,
                            log_level=loglevel, server_header=False, **own_logging)  # fmt: skip
    GracefulServer(config).run()


@click.group()
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

    settings = settings_from_flags(**flags)
    pack = load_pack(settings.city)
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
