"""`cityloop state`: Redis's working state, and rebuilding it from the Kafka log by hand."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from streams.console import deployment_options, settings_from_flags


@click.group()
def state() -> None:
    """Redis's working state: the merge index of open incidents, the work orders, the units' loads."""


@state.command("rebuild")
@deployment_options("kafka", "redis", "city", "prefix", "wait")
def state_rebuild(**flags: Any) -> None:
    """Rebuild Redis's state from the incidents, tasks and feedback topics, as a worker does when Redis lost it.

    Reads the three topics from the beginning, restores the open incidents' merge index (so a repeat report of a
    problem already dispatched joins its incident), the work orders with their SLA timers and the units' open
    tasks, then writes a new state epoch. Only what is missing is written: over a whole state it changes nothing.
    Workers that found Redis empty wait for the new epoch and then go on. The topics must still hold what is
    restored (docs/OPERATIONS.md, "Losing Redis"). Progress goes to stderr, the summary to stdout.
    """
    import redis.asyncio as aioredis

    from streams.cli_city import load_pack
    from streams.connect import wait_for_kafka, wait_for_redis
    from streams.epoch import StateBusy
    from streams.errors import Unreachable
    from streams.rebuild import worker_guard

    settings = settings_from_flags(**flags)
    pack = load_pack(settings.city)
    wait_for_kafka(settings.kafka, settings.connect_timeout_s)
    wait_for_redis(settings.redis_url, settings.connect_timeout_s)

    def progress(line: str) -> None:
        click.echo(f"rebuild: {line}", err=True)

    async def run() -> Any:
        client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
        try:
            return await worker_guard(settings, pack, client, progress=progress, install=False).rebuild_now()
        finally:
            await client.aclose()

    progress(f"reading the log at {settings.kafka.describe()} into Redis at {settings.redis_url}")
    try:
        summary = asyncio.run(run())
    except StateBusy as exc:
        raise Unreachable(f"{exc}; wait for it to finish (the workers' logs say when) and look again") from None
    except KeyboardInterrupt:
        sys.exit(130)
    click.echo(summary.line())
