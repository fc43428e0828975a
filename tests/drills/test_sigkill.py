"""Drill: a worker is SIGKILLed mid-stream and restarted.

tests/integration/test_crash.py is the main proof for reports (3,000, with merges). This drill adds invalid records
to the stream (each dead-lettered once, with its reason, across the crash), prints the figures in the drills' format,
and checks the feedback topic for SLA breaches emitted twice.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from streams.records import REASON_CODES
from tests.integration.conftest import collect
from tests.ops.fixtures import dead_letters, encoded, figures, make_report, outcome, send, total

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_brokers]

VALID, INVALID_EVERY = 1500, 10


def breach_events(bootstrap: str, topics) -> dict[tuple[str, str], set[str]]:
    """SLA breach events on the feedback topic: (task id, stage) -> event ids. A breach is one event per task and
    stage: a second event id for the same pair is a breach emitted twice (a repeat of the same id is only
    at-least-once redelivery, which consumers dedupe by event_id)."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for message in collect(bootstrap, topics.feedback, lambda rs: False, timeout=3):
        event = json.loads(message.value)
        if "breach" in str(event.get("type", "")):
            seen[(event.get("task_id"), event.get("stage"))].add(event["event_id"])
    return seen


def test_sigkill_mid_stream_then_restart_processes_every_record_once(workers, producer, topics, bootstrap):
    """1,500 valid reports and 150 invalid ones (every 10th) flow in; the worker is SIGKILLed after ~300 tasks and
    restarted. Every valid report has one incident and one task id; every invalid record has one dead letter id with
    its reason; no SLA breach is emitted twice for the same task and stage."""
    first = workers.start()
    now = datetime.now(UTC).isoformat()
    stream: list[tuple[bytes, bytes]] = []
    invalid = 0
    for i in range(VALID):
        stream.append(encoded(make_report(i, "kill", now)))
        if i % INVALID_EVERY == 0:
            stream.append((f"bad-{i}".encode(), json.dumps({"report_id": f"bad-{i}", "lat": "north"}).encode()))
            invalid += 1
    sender = threading.Thread(target=send, args=(producer, topics.reports, stream), kwargs={"every": 100,
                              "pause": 0.1})  # fmt: skip
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 300, timeout=60)
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    killed_at = len(collect(bootstrap, topics.tasks, lambda rs: False, timeout=1))
    assert killed_at < VALID, "the kill must land mid-stream"

    second = workers.start()
    sender.join(timeout=120)
    ids = {f"kill-{i}" for i in range(VALID)}
    result = outcome(bootstrap, topics, ids, timeout=120)
    letters = dead_letters(bootstrap, topics, invalid, timeout=60)
    lost, doubled = result.lost(ids), result.assigned_twice()
    assert not lost, f"{len(lost)} reports lost, e.g. {lost[:5]}"
    assert not result.split() and not result.without_task()
    assert not doubled, f"incidents assigned twice: {list(doubled.items())[:3]}"
    letter_ids = {letter["deadletter_id"] for letter in letters}
    assert len(letter_ids) == invalid, f"{len(letter_ids)} dead letters for {invalid} invalid records"
    assert all(letter["stage"] == "validate" and letter["reason_code"] in REASON_CODES and letter["reason"]
               for letter in letters)  # fmt: skip
    breaches = breach_events(bootstrap, topics)
    twice = {pair: events for pair, events in breaches.items() if len(events) > 1}
    assert not twice, f"breaches emitted twice: {list(twice.items())[:3]}"
    figures(
        "sigkill-restart",
        sent=len(stream),
        valid=VALID,
        invalid=invalid,
        killed_after_task_records=killed_at,
        processed=len(result.home),
        dead_lettered=len(letter_ids),
        lost=len(lost),
        duplicated=len(doubled),
        task_records=result.task_records,
        dead_letter_records=len(letters),
        redelivered_recognised=int(total(second.metrics(), "cityloop_duplicates_total")),
        sla_breaches_seen=sum(len(e) for e in breaches.values()),
    )


# The breach half of this drill (SIGKILL while SLA deadlines fall due: each breach once, none lost) runs with the
# closed loop's timer, in tests/integration/test_lifecycle.py
# (test_a_timer_killed_while_breaches_are_due_neither_repeats_nor_loses_one).
