"""Drill: a worker is SIGKILLed mid-stream and restarted, while SLA deadlines fall due.

tests/integration/test_crash.py is the main proof for reports (3,000, with merges). This drill adds invalid records
to the stream (each dead-lettered once, with its reason, across the crash), runs the city on demo time (an hour of
SLA target lasts SECONDS_PER_HOUR seconds, as `cityloop demo` does) so the SLA timer fires throughout, before,
during and after the kill, prints the figures in the drills' format, and checks the feedback topic: no SLA breach
(sla_warning or escalate, tests/drills/breaches.py) emitted twice, and no due escalation lost.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime

import pytest

from dispatch.demo_city import CATEGORIES, write_demo_city
from feedback.sla import parse_span
from streams.demo import SECONDS_PER_HOUR
from streams.democrews import demo_time_pack
from streams.records import REASON_CODES
from tests.drills.breaches import emitted_twice, redelivered, timer_breaches
from tests.integration.conftest import collect
from tests.integration.loop import events_of
from tests.ops.fixtures import dead_letters, encoded, figures, make_report, outcome, send, total

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_brokers]

VALID, INVALID_EVERY = 1500, 10
BAD_REASON = "missing_field"  # {"report_id": ..., "lat": "north"}: the decoder stops at the first missing field
PROMPT_S = 5.0  # orders whose acknowledge target is at most this long in demo time must all escalate in the drill


def demo_seconds(span: str) -> float:
    days, minutes = parse_span(span)
    return (days * 24 + minutes / 60) * SECONDS_PER_HOUR


# the categories (a third of the reports) whose acknowledge deadline passes a few seconds after their dispatch
PROMPT = {c["code"] for c in CATEGORIES if demo_seconds(c["sla"][0]) <= PROMPT_S}


def test_sigkill_mid_stream_then_restart_processes_every_record_once(workers, producer, topics, bootstrap, tmp_path):
    """1,500 valid reports and 150 invalid ones (every 10th) flow in; the worker is SIGKILLed after ~300 tasks, once
    its SLA timer has emitted, and restarted. Every valid report has one incident and one task id; every invalid
    record has one dead letter id with its reason. SLAs run on demo time, so warnings and escalations fall due before,
    during and after the kill: every order of a prompt category escalates its acknowledgement, and no breach is
    emitted under two event ids."""
    city = write_demo_city(tmp_path / "city")
    demo_time_pack(city, SECONDS_PER_HOUR)
    env = {"CITYLOOP_CITY": str(city)}
    first = workers.start(**env)
    now = datetime.now(UTC).isoformat()
    stream: list[tuple[bytes, bytes]] = []
    invalid = 0
    for i in range(VALID):
        stream.append(encoded(make_report(i, "kill", now)))
        if i % INVALID_EVERY == 0:
            stream.append((f"bad-{i}".encode(), json.dumps({"report_id": f"bad-{i}", "lat": "north"}).encode()))
            invalid += 1
    sender = threading.Thread(target=send, args=(producer, topics.reports, stream), kwargs={"every": 100,
                              "pause": 0.3})  # fmt: skip
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 300, timeout=60)
    collect(bootstrap, topics.feedback, lambda rs: bool(timer_breaches(events_of(rs))), timeout=30)  # timer firing
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    killed_at = len(collect(bootstrap, topics.tasks, lambda rs: False, timeout=1))
    assert killed_at < VALID, "the kill must land mid-stream"
    before_kill = timer_breaches(events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=1)))
    assert before_kill, "the kill must land once the SLA timer fires"

    second = workers.start(**env)
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
    # the invalid records' own reason (a report without text), not merely a known code
    assert {(letter["stage"], letter["reason_code"]) for letter in letters} == {("validate", BAD_REASON)}
    assert all(letter["reason"] for letter in letters) and BAD_REASON in REASON_CODES

    due = {
        (incident, task, "acknowledge", "escalate")
        for i in range(VALID)
        if CATEGORIES[i % len(CATEGORIES)]["code"] in PROMPT
        for incident in result.home[f"kill-{i}"]
        for task in result.tasks[incident]
    }
    collect(bootstrap, topics.feedback, lambda rs: due <= timer_breaches(events_of(rs)).keys(), timeout=60)
    breaches = timer_breaches(events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=3)))
    missing = due - breaches.keys()
    twice = emitted_twice(breaches)
    warnings = sum(kind == "sla_warning" for *_, kind in breaches)
    escalations = len(breaches) - warnings
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
        sla_warnings=warnings,
        escalations=escalations,
        timer_records=sum(len(e) for e in breaches.values()),
        timer_records_before_kill=sum(len(e) for e in before_kill.values()),
        timer_records_redelivered=redelivered(breaches),
        escalations_due=len(due),
        escalations_lost=len(missing),
        breaches_emitted_twice=len(twice),
    )
    assert due and warnings > 0, f"the timer must fire in this drill: {len(due)} due, {warnings} warnings"
    assert not missing, f"{len(missing)} of {len(due)} due escalations never emitted, e.g. {sorted(missing)[:3]}"
    assert not twice, f"{len(twice)} breaches emitted twice, e.g. {sorted(twice.items())[:3]}"


# tests/integration/test_lifecycle.py (test_a_timer_killed_while_breaches_are_due_neither_repeats_nor_loses_one) is
# the timer's own crash test: twelve orders, the kill after the first warning, each breach exactly once.
