"""Reaching Kafka and Redis from a command: bounded waits, and one clear sentence when they do not answer.

Every command that needs the broker or Redis asks here first, so that a missing
service costs a few seconds and one line ("no Kafka broker answers at ...;
start one with ..."), not a client library's retry loop and traceback. The
wait is ``Settings.connect_timeout_s`` (``--wait``; 5 s by default): enough for
a broker or Redis that is still starting, short enough for a person at a
terminal.
"""

from __future__ import annotations

import logging
import socket
import time

from streams.errors import Unreachable
from streams.kafkaaccess import KafkaAccess
from streams.redisconn import redis_answers

KAFKA_HINT = "start one with `cityloop dev up` or set CITYLOOP_KAFKA_BOOTSTRAP"
REDIS_HINT = "start one with `cityloop dev up` or set CITYLOOP_REDIS_URL"


def _servers(access: KafkaAccess) -> list[tuple[str, int]]:
    servers = []
    for server in access.servers:
        host, _, port = server.rpartition(":")
        servers.append((host.strip("[]"), int(port)))
    return servers


def _accepts(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=max(timeout, 0.05)):
            return True
    except OSError:
        return False


def _waited(within: float) -> str:
    return f"tried for {within:g} s; --wait for longer"


def wait_for_kafka(target: KafkaAccess | str, within: float) -> None:
    """Return once one of the bootstrap servers accepts a connection; raise :class:`Unreachable` after ``within`` s."""
    access = KafkaAccess.of(target)
    servers = _servers(access)
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if any(_accepts(host, port, min(1.0, remaining)) for host, port in servers):
            return
        if time.monotonic() >= deadline:
            raise Unreachable(f"no Kafka broker answers at {access.bootstrap} ({_waited(within)}); {KAFKA_HINT}")
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))


def wait_for_redis(url: str, within: float) -> None:
    """Return once Redis at ``url`` answers PING; raise :class:`Unreachable` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if redis_answers(url, timeout=min(1.0, max(remaining, 0.05))):
            return
        if time.monotonic() >= deadline:
            raise Unreachable(f"Redis does not answer at {url} ({_waited(within)}); {REDIS_HINT}")
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))


def _bound_ms(within: float) -> int:
    return max(int(within * 1000), 1000)


class ClientLog(logging.Handler):
    """What kafka-python logged while a client tried to connect.

    kafka-python retries a refused login until its bootstrap time-out and then
    raises a bare KafkaTimeoutError ("Unable to bootstrap"); the reason (a
    SaslAuthenticationFailedError, a certificate that does not verify) is only
    in its log. This keeps those lines so the error can name the real cause.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> ClientLog:
        logging.getLogger("kafka").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("kafka").removeHandler(self)


def refused(access: KafkaAccess, exc: BaseException, said: ClientLog | None = None) -> Unreachable | None:
    """The one-line error for a broker that answers but will not let us in (credentials, TLS); None otherwise."""
    from kafka.errors import AuthorizationError, UnsupportedSaslMechanismError

    text = " | ".join([f"{type(exc).__name__}: {exc}", *(said.lines if said else [])])
    if isinstance(exc, UnsupportedSaslMechanismError) or "UnsupportedSaslMechanism" in text:
        return Unreachable(f"Kafka at {access.describe()} does not offer {access.mechanism}; ask its operators")
    if isinstance(exc, AuthorizationError):
        return Unreachable(f"Kafka at {access.describe()} does not allow this ({exc}); ask its operators for the ACL")
    if "SaslAuthenticationFailed" in text:
        line = next(part for part in text.split(" | ") if "SaslAuthenticationFailed" in part)
        reason = line.rsplit("SaslAuthenticationFailedError: ", 1)[-1].rstrip(")")
        return Unreachable(
            f"Kafka at {access.describe()} refused the credentials ({reason[:200]}); check "
            "CITYLOOP_KAFKA_SASL_USERNAME and the password"
        )
    if access.sasl and "socket disconnected" in text:
        # the broker hangs up after a failed login; kafka-python often reads the hang-up before the reason
        return Unreachable(
            f"Kafka at {access.describe()} hung up during the SASL login, as it does on refused credentials; check "
            "CITYLOOP_KAFKA_SASL_USERNAME and the password, and that the broker offers that mechanism"
        )
    if access.tls and ("CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text or "certificate" in text):
        return Unreachable(
            f"the TLS handshake with Kafka at {access.describe()} failed; check CITYLOOP_KAFKA_SSL_CAFILE and the "
            "broker's certificate"
        )
    return None


def unreachable(access: KafkaAccess, exc: BaseException, said: ClientLog | None = None) -> Unreachable:
    return refused(access, exc, said) or Unreachable(
        f"no Kafka broker answers at {access.describe()} ({type(exc).__name__}); {KAFKA_HINT}"
    )


def produce_one(target: KafkaAccess | str, topic: str, key: bytes, value: bytes, within: float) -> None:
    """Write one record and wait for the broker's acknowledgement; :class:`Unreachable` says why it could not."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, KafkaTimeoutError

    access = KafkaAccess.of(target)
    wait_for_kafka(access, within)
    with ClientLog() as said:
        try:
            producer = KafkaProducer(
                **access.kafka_python(), acks="all", max_block_ms=_bound_ms(within),
                bootstrap_timeout_ms=_bound_ms(within),
            )  # fmt: skip
        except KafkaError as exc:
            raise unreachable(access, exc, said) from None
    try:
        producer.send(topic, key=key, value=value).get(timeout=within + 10)
    except KafkaTimeoutError:
        raise Unreachable(
            f"the broker at {access.describe()} did not take a record for {topic} within {within + 10:g} s; "
            "does the topic exist? `cityloop topics create` creates it"
        ) from None
    except KafkaError as exc:
        raise refused(access, exc) or Unreachable(
            f"the broker at {access.describe()} refused a record for {topic}: {exc}"
        ) from None
    finally:
        producer.close(timeout=within)


def topic_consumer(target: KafkaAccess | str, topic: str, within: float, **config: object) -> object:
    """A kafka-python consumer subscribed to ``topic``, once the topic exists; :class:`Unreachable` otherwise.

    A topic that does not exist after ``within`` seconds is an error that lists
    the topics of the same stream under other prefixes (a mistyped prefix is
    the usual cause).
    """
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    access = KafkaAccess.of(target)
    wait_for_kafka(access, within)
    with ClientLog() as said:
        try:
            consumer = KafkaConsumer(**access.kafka_python(), bootstrap_timeout_ms=_bound_ms(within), **config)
        except KafkaError as exc:
            raise unreachable(access, exc, said) from None
    deadline = time.monotonic() + within
    while True:
        names = consumer.topics()
        if topic in names:
            consumer.subscribe([topic])
            return consumer
        if time.monotonic() >= deadline:
            consumer.close()
            stream = topic.rpartition(".")[2]
            others = sorted(n for n in names if n.endswith(f".{stream}") and n != topic)
            elsewhere = f"; topics of that stream under other prefixes: {', '.join(others[:5])}" if others else ""
            raise Unreachable(
                f"topic {topic} does not exist at {access.describe()}: a worker creates it when it starts, or "
                f"`cityloop topics create`{elsewhere}"
            )
        time.sleep(0.5)
