"""How every ``cityloop`` command talks to a person: one-line errors, checked input, quiet client libraries.

The rule, for every command:

* a failure is one line on stderr, ``Error: <what failed>; <the next step>``,
  and a non-zero exit status (2 for a usage mistake, 1 otherwise, 130 after
  Ctrl-C); never a traceback, unless ``cityloop --debug`` (or
  ``CITYLOOP_DEBUG=1``) asks for one;
* input is checked before anything is sent: coordinates finite and in range,
  probabilities in [0, 1], counts whole numbers;
* Kafka's and Faust's client libraries keep their chatter to themselves unless
  asked (``--verbose`` on the long-running commands, or ``--debug``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from streams.errors import ServiceError

if TYPE_CHECKING:
    from streams.settings import Settings

# Loggers of the libraries under CityLoop: their start-up and connection chatter is hidden by default.
CLIENT_LIBRARIES = ("kafka", "aiokafka", "faust", "mode", "aiohttp", "redis", "asyncio", "httpx")
DEBUG_KEY = "cityloop.debug"


def quiet_client_libraries(level: int = logging.ERROR) -> None:
    """Raise the client libraries' loggers to ``level`` (ERROR: only what went wrong)."""
    for name in CLIENT_LIBRARIES:
        logging.getLogger(name).setLevel(level)


# Errors the domain packages raise on purpose (bad input, an unusable file): a message for a person, not a bug.
# Named, not imported, so that `cityloop --help` does not import scikit-learn or shapely.
DOMAIN_ERRORS = ("classifiers.errors:ClassifierError", "dispatch.errors:DispatchError", "feedback.errors:FeedbackError")


def expected(exc: BaseException) -> bool:
    """True for a failure with a known cause: a service not answering, a file the system refused, a domain error."""
    if isinstance(exc, ServiceError | OSError):
        return True
    for spec in DOMAIN_ERRORS:
        module, _, name = spec.partition(":")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ServiceError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)


class CliGroup(click.Group):
    """The ``cityloop`` group: applies the one-line error rule to every command under it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # `cityloop tail ... | head`: the reader has what it wanted
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may reach the closed pipe at exit
            raise click.exceptions.Exit(141) from None
        except Exception as exc:
            if ctx.meta.get(DEBUG_KEY):
                raise
            if expected(exc):
                raise click.ClickException(one_line(describe(exc))) from exc
            words = one_line(str(exc)) or "no message"
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {words[:300]} (a bug: `cityloop --debug ...` shows where)"
            ) from exc

    def main(self, *args: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            outcome = super().main(*args, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `cityloop` or `cityloop dev` alone: the help, as asked
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            click.echo(f"Error: {one_line(exc.format_message())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(outcome if isinstance(outcome, int) else 0)


def one_line(message: str) -> str:
    return " ".join(message.split())


# ---------------------------------------------------------------------------------------------- checked input


class FiniteRange(click.ParamType):
    """A float that is finite and within [low, high]; the error says what kind of number was expected."""

    def __init__(self, name: str, what: str, low: float, high: float) -> None:
        self.name = name  # shown in --help as the option's metavar
        self.what = what
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not {self.what} (a finite number from {self.low:g} to {self.high:g})", param, ctx)
        return number


LATITUDE = FiniteRange("latitude", "a latitude", -90.0, 90.0)
LONGITUDE = FiniteRange("longitude", "a longitude", -180.0, 180.0)
PROBABILITY = FiniteRange("probability", "a probability", 0.0, 1.0)
SECONDS = FiniteRange("seconds", "a number of seconds", 0.001, 366 * 86_400.0)
WAIT = FiniteRange("seconds", "a number of seconds", 0.0, 3600.0)
RATE = FiniteRange("per-second", "a rate per second", 0.01, 100_000.0)
PORT = click.IntRange(1, 65535)


def check_latlon(text: str, what: str) -> tuple[float, float]:
    """``"LAT,LON"`` as two checked floats; a UsageError naming ``what`` otherwise."""
    parts = text.split(",")
    if len(parts) != 2:
        raise click.UsageError(f"{what}: expected LAT,LON, got {text!r}")
    try:
        return LATITUDE.convert(parts[0].strip(), None, None), LONGITUDE.convert(parts[1].strip(), None, None)
    except click.BadParameter as exc:
        raise click.UsageError(f"{what}: {exc.message}") from None


# ------------------------------------------------------------------------------------ deployment flags

_FLAGS: dict[str, Any] = {
    "kafka": lambda: click.option(
        "--kafka",
        "kafka_bootstrap",
        help="Kafka bootstrap servers [env CITYLOOP_KAFKA_BOOTSTRAP; default 127.0.0.1:9092].",
    ),
    "redis": lambda: click.option(
        "--redis", "redis_url", help="Redis URL [env CITYLOOP_REDIS_URL; default redis://127.0.0.1:6379/0]."
    ),
    "city": lambda: click.option("--city", help="City pack directory, or 'demo' [env CITYLOOP_CITY; default demo]."),
    "prefix": lambda: click.option(
        "--topic-prefix", help="Topic prefix and Redis namespace [env CITYLOOP_TOPIC_PREFIX; default cityloop]."
    ),
    "partitions": lambda: click.option(
        "--partitions", type=int, help="Partitions for topics CityLoop creates [env CITYLOOP_PARTITIONS; default 4]."
    ),
    "replication": lambda: click.option(
        "--replication-factor",
        type=int,
        help="Replicas of topics CityLoop creates [env CITYLOOP_REPLICATION_FACTOR; default 1; 3 in production].",
    ),
    "logs": lambda: click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        help="text: lines for a person; json: one JSON object per line with the ids of the record being handled "
        "[env CITYLOOP_LOG_FORMAT; default text].",
    ),
    "wait": lambda: click.option(
        "--wait",
        "connect_timeout_s",
        type=WAIT,
        help="Seconds to keep trying to reach the broker or Redis [env CITYLOOP_CONNECT_TIMEOUT_S; default 5].",
    ),
}


def deployment_options(*names: str) -> Any:
    """The deployment flags a command uses, and only those: kafka, redis, city, prefix, partitions, logs, wait."""

    def decorate(command: Any) -> Any:
        for name in reversed(names):
            command = _FLAGS[name]()(command)
        return command

    return decorate


def settings_from_flags(**flags: Any) -> Settings:
    """Settings from the environment with the flags on top; a bad value is a usage error that names it."""
    from pydantic import ValidationError

    from streams.settings import load_settings

    try:
        return load_settings(**flags)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))} (CITYLOOP_{'_'.join(map(str, e['loc'])).upper()}): {e['msg']}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise click.UsageError(f"invalid settings: {problems}") from None
