"""Drill: exactly-once outputs on Apache Kafka. A worker with CITYLOOP_PROCESSING_GUARANTEE=exactly_once is SIGKILLed
twice mid-stream; a read_committed reader finds every report in one incident with one task, every bad record in one
dead letter, and no output record twice on any topic (the same bytes, or the same task, event or dead-letter id).

At least once (the default, and all the dev broker can do) the same kills may repeat records, with the same ids;
test_sigkill.py checks that nothing is lost or assigned twice there.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import collect
from tests.ops.fixtures import encoded, figures, make_report, outcome, send, total

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.parametrize("broker_kind", ["kafka"], indirect=True, scope="session")]  # fmt: skip

VALID, INVALID_EVERY = 1500, 10
EXACTLY_ONCE = {"CITYLOOP_PROCESSING_GUARANTEE": "exactly_once"}
IDS = {"tasks": "task_id", "feedback": "event_id", "deadletter": "deadletter_id"}


def repeats(bootstrap: str, topics) -> dict[str, dict[str, int]]:
    """Per output topic, for a read_committed reader: records seen more than once (by their bytes) and ids seen more
    than once (tasks, events, dead letters; an incident's changelog repeats its id by design)."""
    found: dict[str, dict[str, int]] = {}
    for stream in ("incidents", "tasks", "feedback", "deadletter"):
        records = collect(bootstrap, getattr(topics, stream), lambda rs: False, timeout=3,
                          isolation_level="read_committed")  # fmt: skip
        same_bytes = Counter(hashlib.sha256(m.value).hexdigest() for m in records)
        found[f"{stream} records"] = {k: n for k, n in same_bytes.items() if n > 1}
        if stream in IDS:
            same_id = Counter(json.loads(m.value)[IDS[stream]] for m in records)
            found[f"{stream} ids"] = {k: n for k, n in same_id.items() if n > 1}
    return found


def test_two_sigkills_mid_stream_lose_nothing_and_repeat_nothing_for_a_read_committed_reader(
    workers, producer, topics, bootstrap
):
    first = workers.start(**EXACTLY_ONCE)
    now = datetime.now(UTC).isoformat()
    stream: list[tuple[bytes, bytes]] = []
    invalid = 0
    for i in range(VALID):
        stream.append(encoded(make_report(i, "once", now)))
        if i % INVALID_EVERY == 0:
            stream.append((f"bad-{i}".encode(), json.dumps({"report_id": f"bad-{i}", "lat": "north"}).encode()))
            invalid += 1
    sender = threading.Thread(target=send, args=(producer, topics.reports, stream), kwargs={"every": 100,
                              "pause": 0.15})  # fmt: skip
    sender.start()
    kills = []
    worker = first
    for after in (300, 800):
        collect(bootstrap, topics.tasks, lambda rs, n=after: len(rs) >= n, timeout=90, isolation_level="read_committed")
        assert worker.kill(signal.SIGKILL) == -signal.SIGKILL
        kills.append(len(collect(bootstrap, topics.tasks, lambda rs: False, timeout=1)))
        worker = workers.start(**EXACTLY_ONCE)
    sender.join(timeout=180)
    assert not sender.is_alive()
    assert kills[-1] < VALID, f"the kills must land mid-stream: tasks at the kills {kills}"

    ids = {f"once-{i}" for i in range(VALID)}
    result = outcome(bootstrap, topics, ids, timeout=180, isolation_level="read_committed")
    lost, doubled = result.lost(ids), result.assigned_twice()
    assert not lost, f"{len(lost)} reports lost, e.g. {lost[:5]}"
    assert not result.split() and not result.without_task()
    assert not doubled, f"incidents assigned twice: {list(doubled.items())[:3]}"
    letters = collect(bootstrap, topics.deadletter, lambda rs: len(rs) >= invalid, timeout=60,
                      isolation_level="read_committed")  # fmt: skip
    assert len({json.loads(m.value)["deadletter_id"] for m in letters}) == invalid
    found = repeats(bootstrap, topics)
    assert not any(found.values()), {kind: list(r.items())[:3] for kind, r in found.items() if r}
    # the check sees a repeat when there is one: one task record written again, as at-least-once could
    task = collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 1, timeout=10)[0]
    producer.send(topics.tasks, key=task.key, value=task.value).get(timeout=10)
    again = repeats(bootstrap, topics)
    task_id = json.loads(task.value)["task_id"]
    assert again["tasks ids"] == {task_id: 2} and len(again["tasks records"]) == 1
    figures(
        "exactly-once-two-sigkills",
        sent=len(stream),
        valid=VALID,
        invalid=invalid,
        task_records_at_kills="+".join(map(str, kills)),
        processed=len(result.home),
        lost=len(lost),
        duplicated=len(doubled),
        task_records=result.task_records,
        repeated_records=sum(len(r) for r in found.values()),
        transactions_committed=int(total(worker.metrics(), "cityloop_transactions_total", outcome="committed")),
        redelivered_recognised=int(total(worker.metrics(), "cityloop_duplicates_total")),
    )
