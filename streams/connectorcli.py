"""``cityloop connectors``: forward the connected units' tasks and events to their own systems.

Like ``cityloop worker`` it checks its port, the city pack (at least one unit with a ``connector``), every
connector's secret in the environment, Redis and the broker before it starts, names what it runs in a few lines
on stderr, and fails in one line otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import click

from streams import logs
from streams.cli_city import load_pack
from streams.console import DEBUG_KEY, deployment_options, quiet_client_libraries, settings_from_flags
from streams.servicecli import announce, services_ready


@click.command()
@deployment_options("kafka", "redis", "city", "prefix", "partitions", "logs", "wait")
@click.option("--web-port", "connectors_port", type=int,
              help="Port of /metrics and /health [env CITYLOOP_CONNECTORS_PORT; default 6067].")  # fmt: skip
@click.option("--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--verbose", is_flag=True, help="Also show the Kafka and HTTP client libraries' logs.")
@click.pass_context
def connectors(ctx: click.Context, loglevel: str, verbose: bool, **flags: Any) -> None:
    """Send connected units' tasks and lifecycle events to their own systems (docs/CONNECTORS.md).

    A unit with a `connector` in the city pack gets each of its tasks and its orders' events as a signed POST
    (webhook) or its tasks as Open311 requests whose status is polled back (open311), retried with back-off and
    dead-lettered after the last attempt; each connector has its own queue (in Redis) and circuit breaker, so one
    system that is down holds back no other. Run it beside the worker and the API (which takes webhook systems'
    status callbacks) with the same settings; each secret or api_key comes from the environment variable its
    connector names. Stop with Ctrl-C or SIGTERM.
    """
    from streams.connectors.service import ConnectorService, MissingSecret, connected_units, secrets_from_env
    from streams.redisconn import port_in_use

    settings = settings_from_flags(**flags)
    if settings.connectors_port and port_in_use(settings.web_host, settings.connectors_port):
        raise click.ClickException(f"port {settings.connectors_port} on {settings.web_host} is in use; "
                                   "choose another with --web-port or CITYLOOP_CONNECTORS_PORT")  # fmt: skip
    logs.configure(loglevel, settings.log_format, settings.log_repeat_s)
    if verbose or ctx.meta.get(DEBUG_KEY):
        quiet_client_libraries(logging.NOTSET)
    pack = load_pack(settings.city)
    units = connected_units(pack)
    if not units:
        raise click.ClickException(f"no unit of {pack.name}'s city pack has a connector, so there is nothing to send; "
                                   "add `connector:` to a unit (docs/CONNECTORS.md)")  # fmt: skip
    try:
        secrets = secrets_from_env(pack)
    except MissingSecret as exc:
        raise click.ClickException(str(exc)) from None
    services_ready(settings)
    lines = [f"connectors for {pack.name} (pack {pack.version}), topics {settings.topic_prefix}.*"]
    for unit in units:
        target = getattr(unit.connector, "url", "")
        lines.append(f"  {unit.id:<20} {unit.connector.type} {target} (sends {', '.join(unit.connector.send)})")
    lines += [f"  kafka   {settings.kafka.describe()}", f"  redis   {settings.redis_url}",
              f"  web     http://{settings.web_host}:{settings.connectors_port}/metrics and /health"]  # fmt: skip
    announce(lines, settings.log_format)
    service = ConnectorService(settings, pack, secrets, web_port=settings.connectors_port)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, service.stopping.set)
        await service.run()

    asyncio.run(main())
