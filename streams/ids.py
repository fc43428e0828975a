"""Every identifier CityLoop makes, and the ISO-8601 times on its records: made and parsed here only.

Ids are derived from their input, never drawn at random, so a record processed
twice gets the same ids twice (at-least-once delivery, ledger and consumers
dedupe on them):

=================  ==========================================  =========================================
what               made from                                   looks like
=================  ==========================================  =========================================
source id          a report id; a sensor id and its alarm's   ``report:<id>``, ``sensor:<id>:<since>``
                   opening time
incident id        the first source                            ``inc-<20 hex>``
task id            incident id and attempt                     ``tsk-<20 hex>-<attempt>``
event id           incident, type, task and an occasion key    ``evt-<20 hex>``
dead letter id     where the input record was (a connector's:  ``<topic>:<partition>:<offset>``
                   and the unit it was for)                    (``...:connector:<unit>``)
=================  ==========================================  =========================================
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from feedback import orders

# the times on records are defined once, in the feedback package (which cannot import streams); used from here
from feedback.times import iso as iso
from feedback.times import iso_utc as iso_utc
from feedback.times import parse_iso as parse_iso


def stable_id(prefix: str, *parts: str) -> str:
    """``<prefix>-<first 20 hex digits of SHA-256 over the parts>``."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]
    return f"{prefix}-{digest}"


# ------------------------------------------------------------------ sources


def report_source(report_id: str) -> str:
    return f"report:{report_id}"


def sensor_source(sensor_id: str, since: float) -> str:
    """One alarm of a sensor: the sensor and the time its alarm opened (``repr``, so exact)."""
    return f"sensor:{sensor_id}:{since!r}"


# its inverse lives with the work order, which needs it and cannot import streams: one definition, used by both
sensor_of_source = orders.sensor_of_source


def sensor_actor(sensor_id: str | None) -> str:
    """The actor of events a sensor causes (its clear, its verification)."""
    return f"sensor:{sensor_id}"


# ---------------------------------------------------------------- incidents


def report_incident(report_id: str) -> str:
    """The incident a report opens, if it opens one (a merged report joins another)."""
    return stable_id("inc", "report", report_id)


def sensor_incident(sensor_id: str, since: float) -> str:
    """The incident an alarm opens, if it opens one."""
    return stable_id("inc", "sensor", sensor_id, repr(since))


def task_id_for(incident_id: str, attempt: int = 1) -> str:
    return f"{incident_id.replace('inc-', 'tsk-', 1)}-{attempt}"


def incident_of_task(task_id: str) -> str | None:
    """``tsk-<digest>-<attempt>`` -> ``inc-<digest>`` (the inverse of :func:`task_id_for`); None if malformed."""
    head, sep, attempt = task_id.rpartition("-")
    if not sep or not attempt.isdigit() or not head.startswith("tsk-"):
        return None
    return "inc-" + head[len("tsk-") :]


def event_id(incident_id: str, kind: str, task_id: str | None, key: str) -> str:
    return stable_id("evt", incident_id, kind, task_id or "", key)


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def connector_dead_letter_id(topic: str, partition: int, offset: int, unit_id: str) -> str:
    """A record a connector gave up on: one record may go to several units' systems, each its own dead letter."""
    return f"{dead_letter_id(topic, partition, offset)}:connector:{unit_id}"


# -------------------------------------------------------------------- times


def iso_ts(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def indexed_method(method: str, model_version: str | None) -> str:
    """How an incident's category was found, as the merge index keeps it: the text model's version rides along.

    A repeat that joins an incident gets the opener's method back from the index, not its own; with the version in
    the same field the joined incident still names the model that classified it (``text_model@<version>``).
    """
    return f"{method}@{model_version}" if method == "text_model" and model_version else method


def method_and_version(indexed: str) -> tuple[str, str | None]:
    """:func:`indexed_method` undone: ``("text_model", "v3")`` from ``text_model@v3``; other methods have no version."""
    method, at, version = indexed.partition("@")
    return (method, version) if at and version else (method, None)
