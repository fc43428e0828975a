"""The worker's batch sink puts a keyed record where every other Kafka client would."""

from __future__ import annotations

from kafka.partitioner import DefaultPartitioner

from streams.ids import stable_id
from streams.sinks import partition_for


class _Cluster:
    """The part of kafka-python's cluster metadata its partitioner reads."""

    def __init__(self, partitions: list[int]) -> None:
        self._partitions = set(partitions)

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def test_the_sink_partitions_keys_as_kafka_python_does():
    """An incident's events are written by the worker (its own partitioning) and by clients such as the API and
    kafka-python tools; the lifecycle reads them in order only if all of them pick the same partition."""
    keys = [stable_id("inc", "report", str(n)).encode() for n in range(2000)] + [b"", b"x", "ünïcode".encode()]
    for count in (1, 4, 12):
        partitions = list(range(count))
        chosen = [partition_for(key, partitions) for key in keys]
        cluster = _Cluster(partitions)
        assert chosen == [DefaultPartitioner().partition("t", key, key, None, None, cluster) for key in keys]
    assert len({partition_for(key, list(range(4))) for key in keys}) == 4, "keys spread over the partitions"
