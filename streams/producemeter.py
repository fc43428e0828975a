"""Counting what a producer sends: records, bytes, send-to-acknowledgement time and errors, per topic.

The worker sends its output through its own batching producer (streams/sinks.py: one aiokafka record batch per
partition, under Faust's producer), so Faust's producer metrics never saw a record; the API writes one event at a
time (streams/api/context.py). Both count here, each on its own process's registry (streams/metrics.py).

Records and bytes are counted when the broker acknowledges them, so they are what reached the log; a failed send
counts one error per call (a batch of a partition, or one API event), in a bounded set of classes, and its records
are counted again only when the retry gets through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams import metrics

# Exception class names (aiokafka's and kafka-python's agree) -> the error label. Looked up along the class's MRO,
# so a subclass the table does not name takes its parent's class, and anything else is "other".
_ERROR_CLASSES = {
    "KafkaTimeoutError": "timeout",
    "RequestTimedOutError": "timeout",
    "TimeoutError": "timeout",
    "KafkaConnectionError": "connection",
    "NodeNotReadyError": "connection",
    "ConnectionError": "connection",
    "NotLeaderForPartitionError": "not_leader",
    "LeaderNotAvailableError": "not_leader",
    "MessageSizeTooLargeError": "too_large",
    "RecordListTooLargeError": "too_large",
    "RecordTooLarge": "too_large",
    "UnknownTopicOrPartitionError": "unknown_topic",
    "TopicAuthorizationFailedError": "authorization",
    "ClusterAuthorizationFailedError": "authorization",
    "TransactionalIdAuthorizationFailed": "authorization",
}


def error_class(exc: BaseException) -> str:
    """The bounded label of a produce failure (one of :data:`streams.metrics.PRODUCE_ERROR_CLASSES`)."""
    for cls in type(exc).__mro__:
        found = _ERROR_CLASSES.get(cls.__name__)
        if found is not None:
            return found
    return "other"


def stream_of(topic: str) -> str:
    """A topic's stream name without the deployment's prefix (``cityloop.tasks`` -> ``tasks``), else ``other``."""
    stream = topic.rsplit(".", 1)[-1]
    return stream if stream in metrics.STREAMS else "other"


class RecordTooLarge(ValueError):
    """A record larger than a whole producer batch: the producer cannot send it (counted as ``too_large``)."""


@dataclass(frozen=True)
class ProduceMeter:
    """The four produce metrics of one process's registry."""

    records: Any
    bytes: Any
    seconds: Any
    errors: Any

    def start(self, streams: Iterable[str]) -> None:
        """Create each topic's series at 0 (``increase()`` then sees a first error; a panel shows 0, not nothing)."""
        for stream in streams:
            self.records.labels(stream)
            self.bytes.labels(stream)
            self.seconds.labels(stream)
            for error in metrics.PRODUCE_ERROR_CLASSES:
                self.errors.labels(stream, error)

    def failed(self, topic: str, exc: BaseException) -> None:
        metrics.child(self.errors, stream_of(topic), error_class(exc)).inc()

    def acknowledged(self, topic: str, records: int, size: int, started: float) -> None:
        stream = stream_of(topic)
        metrics.child(self.records, stream).inc(records)
        metrics.child(self.bytes, stream).inc(size)
        metrics.child(self.seconds, stream).observe(time.monotonic() - started)

    def watch(self, future: asyncio.Future[Any], topic: str, records: int, size: int, started: float) -> None:
        """Count a sent batch when its future settles: acknowledged, or failed (a cancelled one is neither)."""

        def settled(done: asyncio.Future[Any]) -> None:
            if done.cancelled():
                return
            exc = done.exception()
            if exc is None:
                self.acknowledged(topic, records, size, started)
            else:
                self.failed(topic, exc)

        future.add_done_callback(settled)


WORKER = ProduceMeter(metrics.PRODUCE_RECORDS, metrics.PRODUCE_BYTES, metrics.PRODUCE_SECONDS, metrics.PRODUCE_ERRORS)
API = ProduceMeter(
    metrics.API_PRODUCE_RECORDS, metrics.API_PRODUCE_BYTES, metrics.API_PRODUCE_SECONDS, metrics.API_PRODUCE_ERRORS
)
