"""`cityloop triage`: what the classifier was unsure about, and a person's decision."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click


@click.group()
def triage() -> None:
    """Reports waiting for a person at the ops centre, because the classifier was unsure."""


def _settings(**flags: Any) -> Any:
    from streams.cli import _settings as settings

    return settings(**flags)


@triage.command("list")
@click.option("--redis", "redis_url", help="Redis URL [env CITYLOOP_REDIS_URL].")
@click.option("--topic-prefix", help="Topic prefix and Redis namespace [env CITYLOOP_TOPIC_PREFIX].")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def triage_list(redis_url: str | None, topic_prefix: str | None, limit: int, as_json: bool) -> None:
    """List the oldest reports waiting for a decision, with the model's guesses."""
    import redis.asyncio as aioredis

    from streams.state import TriageQueue

    settings = _settings(redis_url=redis_url, topic_prefix=topic_prefix)

    async def waiting() -> list[tuple[str, dict[str, Any]]]:
        client = aioredis.Redis.from_url(settings.redis_url)
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
        click.echo(f"{incident_id}  {item['event_time']}  ({item['lat']:.5f}, {item['lon']:.5f})")
        click.echo(f"    {item['text'][:200]!r}")
        click.echo(f"    guesses: {guesses}")


@triage.command("decide")
@click.argument("incident_id")
@click.option("--category", required=True, help="The category a person chose.")
@click.option("--by", "decided_by", required=True, help="Who decided (kept with the decision, for retraining).")
@click.option("--kafka", "kafka_bootstrap", help="Kafka bootstrap servers [env CITYLOOP_KAFKA_BOOTSTRAP].")
@click.option("--topic-prefix", help="Topic prefix [env CITYLOOP_TOPIC_PREFIX].")
def triage_decide(incident_id: str, category: str, decided_by: str, kafka_bootstrap: str | None,
                  topic_prefix: str | None) -> None:  # fmt: skip
    """File a decision: the worker dispatches the incident (or merges it) under CATEGORY."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from streams.topics import Topics

    settings = _settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    decision = {
        "type": "triage_decision",
        "incident_id": incident_id,
        "category": category,
        "decided_by": decided_by,
        "at": datetime.now(UTC).isoformat(),
    }
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        topic = Topics(settings.topic_prefix).feedback
        producer.send(topic, key=incident_id.encode(), value=json.dumps(decision).encode()).get(timeout=10)
        producer.close()
    except KafkaError as exc:
        raise click.ClickException(f"could not write to {settings.kafka_bootstrap}: {exc}") from None
    click.echo(f"decision filed: {incident_id} -> {category} (the worker applies it; unknown ids are dead-lettered)")
