"""Connectors: CityLoop between the city's existing systems (docs/CONNECTORS.md).

A unit with a ``connector`` in the city pack (dispatch/connectors.py) is served by its own system: ``cityloop
connectors`` (streams/connectors/service.py) sends it the unit's tasks and its orders' lifecycle events, and the
API's ``POST /connectors/{unit_id}/events`` (streams/api/connectors.py) takes its status back. The parts:

* ``base``: what a connector type is (``send``, optional ``poll``) and the registry of types;
* ``webhook``: the ``webhook`` type, signed JSON POSTs;
* ``open311``: the ``open311`` type, tasks as GeoReport v2 requests (``georeport``: the mapping, ``remote``: the
  request ids in Redis), their status polled (``poller``) and written as the events ``status`` makes;
* ``signing``: HMAC-SHA256 signatures over ``<timestamp>.<body>``, both ways;
* ``breaker``: the per-connector circuit breaker and the back-off;
* ``intake``, ``outbox``, ``courier``: from the topics to each connector's Redis queue, and out of it.

Importing this package imports nothing heavy: the API uses ``signing`` and ``status`` alone.
"""
