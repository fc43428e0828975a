"""Topic administration with kafka-python (an outside client, as operators would use)."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.connect import KAFKA_HINT, ClientLog, refused
from streams.errors import Unreachable
from streams.kafkaaccess import KafkaAccess
from streams.topics import Topics


def topic_configs(name: str, replication: int) -> dict[str, str]:
    """The configs a topic is created with: its stream's cleanup and retention, and min.insync.replicas."""
    prefix, _, _ = name.rpartition(".")
    configs = Topics(prefix).config(name) if prefix else {}
    if replication > 1:  # acks=all waits for min.insync.replicas: one fewer than the replicas, so one may be down
        configs["min.insync.replicas"] = str(max(1, replication - 1))
    return configs


def ensure_topics(
    target: KafkaAccess | str, names: list[str], partitions: int, replication: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Waits up to ``timeout`` seconds for the broker, then fails with a message
    that names the address tried.
    """
    access = KafkaAccess.of(target)
    deadline = time.monotonic() + timeout
    said = ClientLog()  # what kafka-python logged over every attempt: the reason a login failed is only there
    while True:
        bound_ms = max(int(1000 * (deadline - time.monotonic())), 1000)  # every attempt ends by the deadline
        try:
            with said:
                admin = KafkaAdminClient(
                    **access.kafka_python(), client_id="cityloop-admin", request_timeout_ms=max(bound_ms, 10_000),
                    bootstrap_timeout_ms=bound_ms,
                )  # fmt: skip
            break
        except (KafkaError, OSError) as exc:
            denied = refused(access, exc, said)
            if denied is not None:
                raise denied from None
            if time.monotonic() + 0.5 > deadline:
                raise Unreachable(
                    f"no Kafka broker answers at {access.describe()} ({type(exc).__name__}; tried for {timeout:g} s); "
                    f"{KAFKA_HINT}"
                ) from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        created = []
        for name in missing:
            try:
                configs = topic_configs(name, replication)
                admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication,
                                              topic_configs=configs)])  # fmt: skip
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
