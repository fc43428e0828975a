"""``cityloop demo`` and ``cityloop simulate``: the simulated city, on this machine or into a deployment.

``demo`` checks its ports and hands over to :mod:`streams.demo`, which starts
everything and prints the run; ``simulate`` only writes: it plays the simulated
city's reports and sensor readings into any deployment's topics, as a load or a
smoke test, inside the city pack's area.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from streams.cli_city import load_pack
from streams.console import PORT, RATE, SECONDS, deployment_options, settings_from_flags


@click.command()
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

    settings = settings_from_flags(redis_url=redis_url, data_dir=data_dir, kafka_bootstrap=kafka_bootstrap)
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


@click.command()
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

    settings = settings_from_flags(**flags)
    pack = load_pack(settings.city)
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
