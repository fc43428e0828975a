"""The ``cityloop`` command line: the ``main`` group, and the small commands that read or write one stream.

The group applies the one-line error rule (:mod:`streams.console`) to every
command. ``topics create``, ``report`` and ``tail`` live here; the other
commands live in their own modules and are registered on the group at the
bottom: ``dev`` (:mod:`streams.devcli`), ``worker``, ``api`` and ``units``
(:mod:`streams.servicecli`), ``connectors`` (:mod:`streams.connectorcli`),
``demo`` and ``simulate`` (:mod:`streams.democli`),
``route`` and ``city`` (:mod:`streams.cli_city`), ``state`` (:mod:`streams.statecli`), ``triage``
(:mod:`streams.triagecli`), ``train`` and ``eval`` (:mod:`streams.modelcli`), ``retrain`` and ``model``
(:mod:`streams.retraincli`).
Those modules never import this one, so ``python -m streams.cli`` loads each
of them once.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC
from typing import Any

import click

from streams.console import (
    DEBUG_KEY,
    LATITUDE,
    LONGITUDE,
    SECONDS,
    CliGroup,
    deployment_options,
    quiet_client_libraries,
    settings_from_flags,
)


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

    settings = settings_from_flags(**flags)
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
    settings = settings_from_flags(**flags)
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

    settings = settings_from_flags(**flags)
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


# ------------------------------------------------------------------ the commands of the other modules

from streams import backtestcli  # noqa: E402, F401  (adds `city backtest` to the city group)
from streams.cli_city import city, route  # noqa: E402  (registered on the group defined above)

main.add_command(route)
main.add_command(city)


from streams.triagecli import triage  # noqa: E402 - registered after the group exists

main.add_command(triage)

from streams.devcli import dev  # noqa: E402

main.add_command(dev)

from streams.servicecli import api, units, worker  # noqa: E402

main.add_command(worker)
main.add_command(api)
main.add_command(units)

from streams.connectorcli import connectors  # noqa: E402
from streams.statecli import state  # noqa: E402

main.add_command(connectors)
main.add_command(state)

from streams.democli import demo, simulate  # noqa: E402

main.add_command(demo)
main.add_command(simulate)

from streams.modelcli import eval_ as eval_command, train  # noqa: E402, I001

main.add_command(train)
main.add_command(eval_command, name="eval")

from streams.retraincli import model, retrain  # noqa: E402

main.add_command(retrain)
main.add_command(model)

if __name__ == "__main__":
    main(prog_name="cityloop")
