"""`cityloop triage`: what the classifier was unsure about, and a person's decision."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click

from streams.console import deployment_options, settings_from_flags


@click.group()
def triage() -> None:
    """Reports waiting for a person at the ops centre, because the classifier was unsure."""


@triage.command("list")
@deployment_options("redis", "prefix", "wait")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def triage_list(limit: int, as_json: bool, **flags: Any) -> None:
    """List the oldest reports waiting for a decision, with the model's guesses."""
    import redis.asyncio as aioredis

    from streams.connect import wait_for_redis
    from streams.state import TriageQueue

    settings = settings_from_flags(**flags)
    wait_for_redis(settings.redis_url, settings.connect_timeout_s)

    async def waiting() -> list[tuple[str, dict[str, Any]]]:
        client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            return await TriageQueue(client, settings.redis_namespace, settings.dedup_ttl_s).waiting(limit)
        finally:
            await client.aclose()

    items = asyncio.run(waiting())
    if not items:
        click.echo("the triage queue is empty")
    for incident_id, item in items:
        if as_json:
            click.echo(json.dumps({"incident_id": incident_id, **item}, ensure_ascii=False))
            continue
        guesses = ", ".join(f"{c} {p:.2f}" for c, p in item["top"]) or "none"
        where = (f"({item['lat']:.5f}, {item['lon']:.5f})" if item.get("lat") is not None
                 else f"no location: {item.get('address')} (decide with --lat and --lon)")  # fmt: skip
        click.echo(f"{incident_id}  {item['event_time']}  {where}")
        click.echo(f"    {item['text'][:200]!r}")
        click.echo(f"    guesses: {guesses}")


@triage.command("decide")
@deployment_options("kafka", "city", "prefix", "wait")
@click.argument("incident_id")
@click.option("--category", required=True, help="The category a person chose (one of the city pack's).")
@click.option("--by", "decided_by", required=True, help="Who decided (kept with the decision, for retraining).")
@click.option(
    "--lat",
    type=click.FloatRange(-85.05112878, 85.05112878),
    default=None,
    help="Where it is: required for a report located by an address only.",
)
@click.option("--lon", type=click.FloatRange(-180, 180), default=None, help="With --lat.")
def triage_decide(incident_id: str, category: str, decided_by: str, lat: float | None, lon: float | None,
                  **flags: Any) -> None:  # fmt: skip
    """File a decision: the worker dispatches the incident (or merges it) under CATEGORY."""
    from streams.cli_city import load_pack
    from streams.connect import produce_one
    from streams.topics import Topics

    settings = settings_from_flags(**flags)
    pack = load_pack(settings.city)
    if pack.category(category) is None:
        known = ", ".join(c.code for c in pack.spec.categories)
        raise click.UsageError(f"unknown category {category!r}; {pack.name} has: {known}")
    if not decided_by.strip():
        raise click.UsageError("--by is empty: say who decided")
    if (lat is None) != (lon is None):
        raise click.UsageError("--lat and --lon go together")
    decision = {
        "type": "triage_decision",
        "incident_id": incident_id,
        "category": category,
        "decided_by": decided_by,
        "at": datetime.now(UTC).isoformat(),
    }
    if lat is not None:
        decision["lat"], decision["lon"] = lat, lon
    topic = Topics(settings.topic_prefix).feedback
    produce_one(settings.kafka, topic, incident_id.encode(), json.dumps(decision).encode(),
                settings.connect_timeout_s)  # fmt: skip
    click.echo(f"decision filed: {incident_id} -> {category} (the worker applies it; unknown ids are dead-lettered)")
