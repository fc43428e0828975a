"""Faust's aiokafka transport, with a consumer that joins no group when it is given nothing to read.

Faust hosts the worker process (signals, shutdown order, timers, the web views,
the producer), but CityLoop's input topics are read by streams/ingest.py, so
Faust's own consumer subscribes to nothing. Faust would still join a consumer
group with an empty subscription: a group join (about 3 s on the dev broker)
at every start and every rebalance, for nothing. With no leader topic
(``topic_disable_leader``) and this subscribe, it joins none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from faust.transport import drivers
from faust.transport.drivers import aiokafka as aiokafka_driver

SCHEME = "cityloop"


class _Consumer(aiokafka_driver.Consumer):
    logger = logging.getLogger("faust.cityloop")  # its "Starting..."/"Stopping..." lines: Faust's, behind --verbose

    async def subscribe(self, topics: Iterable[str]) -> None:
        wanted = list(topics)
        if wanted:
            await super().subscribe(wanted)


class Transport(aiokafka_driver.Transport):
    """The aiokafka transport whose consumer subscribes only when there is something to read."""

    Consumer = _Consumer


drivers.TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")
