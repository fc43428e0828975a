"""What a worker adds to Faust's Prometheus sensor: consumer lag, and names that pass ``promtool check metrics``.

Faust's sensor (``setup_prometheus_sensors``) registers its metrics on prometheus-client's default registry, which
the worker serves at ``/metrics``. One of them, ``<prefix>_events_runtime_ms``, is named with an abbreviated,
non-base unit, which Prometheus' conventions (and ``promtool check metrics``) reject; the time a batch takes is
``cityloop_batch_seconds``, so that histogram is left out of the exposition (Faust still observes into it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
from prometheus_client.registry import REGISTRY, CollectorRegistry

from streams import lag
from streams.topics import Topics

log = logging.getLogger(__name__)


def install(
    app: faust.App, topics: Topics, sources: Sequence[lag.LagSource], registry: CollectorRegistry = REGISTRY
) -> lag.LagCollector:
    """Call after ``setup_prometheus_sensors(app, registry=registry)``; ``sources``: the consumers to report lag of."""
    faust_metrics = getattr(app.monitor, "_metrics", None)
    runtime_ms = getattr(faust_metrics, "events_runtime_latency", None)
    if runtime_ms is not None:
        try:
            registry.unregister(runtime_ms)
        except KeyError:
            log.debug("Faust's events_runtime_ms histogram was not registered")
    return lag.install(sources, topics, registry)
