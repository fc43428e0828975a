"""Drill: thousands of malformed records, with valid traffic mixed in; the worker dead-letters each and never dies."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from streams.records import REASON_CODES, Rejected, decode_reading, decode_report
from tests.drills.poison import FAMILY_CODES, poison, valid_reading, valid_report
from tests.ops.fixtures import dead_letters, figures, make_report, outcome, total

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_brokers]

SEED = 20261126
POISON_REPORTS, POISON_READINGS = 3000, 1000
VALID_REPORTS, VALID_READINGS = 300, 200


def reason_code(is_report: bool, payload: bytes | None) -> str:
    """The reason code the worker's decoders give ``payload`` (``unknown_kind``: decoded, but no detector)."""
    try:
        (decode_report if is_report else decode_reading)(payload, now=datetime.now(UTC), max_skew=timedelta(days=1))
    except Rejected as exc:
        assert exc.code in REASON_CODES, exc.code
        return exc.code
    return "unknown_kind"


def test_every_poison_payload_breaks_the_contract():
    """The generator's payloads are all refused by the decoders (or name a sensor kind with no detector)."""
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    for n in range(3000):
        is_report = n % 3 != 0
        family, payload = poison(rng, valid_report(rng, n) if is_report else valid_reading(rng, n))
        try:
            decoded = (decode_report if is_report else decode_reading)(payload, now=now, max_skew=timedelta(days=1))
        except Rejected as exc:
            assert exc.code in FAMILY_CODES[family], f"{family} refused as {exc.code}: {payload[:200]!r}"
            continue
        assert not is_report and decoded.kind != "water_level", f"{family} made a valid record: {payload[:200]!r}"
        assert "unknown_kind" in FAMILY_CODES[family], family


def test_poison_fuzz_dead_letters_everything_bad_and_processes_everything_good(workers, producer, topics, bootstrap):
    """4,003 seeded malformed payloads (random bytes, 70-300 KB records, three records or keys of 0.6-0.9 MB,
    20,000-deep nesting, wrong types, NaN and Infinity, bad UTF-8, missing fields, duplicate keys, valid JSON of
    the wrong shape, bad ids, times and kinds, nulls) on the reports and readings topics, shuffled with 300 valid
    reports and 200 valid readings. Each malformed record gets exactly one dead letter, at its own
    topic/partition/offset, with a reason; the worker keeps its pid and stays ready; every valid report has an
    incident and every valid reading is ingested."""
    worker = workers.start()
    pid = worker.process.pid
    rng = random.Random(SEED)
    now = datetime.now(UTC).isoformat()
    items: list[tuple[str, bytes | None, bytes | None, str]] = []  # topic, key, value, family or "valid"
    for n in range(POISON_REPORTS):
        family, payload = poison(rng, valid_report(rng, n))
        key = rng.choice([f"fz-{n}".encode(), None, b"\xff\xfe"]) if payload is not None else b"tombstone"
        items.append((topics.reports, key, payload, family))
    for n in range(POISON_READINGS):
        family, payload = poison(rng, valid_reading(rng, n))
        items.append((topics.readings, f"fz-s{n}".encode(), payload, family))
    for n in range(VALID_REPORTS):
        record = make_report(n, "fzv", now)
        items.append((topics.reports, record["report_id"].encode(), json.dumps(record).encode(), "valid"))
    for n in range(VALID_READINGS):
        record = valid_reading(rng, 100_000 + n)
        items.append((topics.readings, record["sensor_id"].encode(), json.dumps(record).encode(), "valid"))
    # near the broker's 1 MB record limit: kept whole, their dead letters would not fit (they are cut to 64 KiB)
    items.append((topics.reports, b"near-limit-1", b"\xff" + rng.randbytes(900_000), "near_limit"))
    items.append((topics.reports, b"near-limit-2", b"\x01" * 700_000, "near_limit"))
    items.append((topics.readings, b"k" * 600_000, b"{}", "near_limit"))
    rng.shuffle(items)

    futures = [
        (producer.send(topic, key=key, value=value), family, topic, value) for topic, key, value, family in items
    ]
    producer.flush()
    poisoned: dict[str, str] = {}  # deadletter id -> family
    expected: dict[str, str] = {}  # deadletter id -> the reason code the decoders give that payload here
    for future, family, topic, value in futures:
        meta = future.get(timeout=30)
        if family != "valid":
            letter_id = f"{topic}:{meta.partition}:{meta.offset}"
            poisoned[letter_id] = family
            expected[letter_id] = reason_code(topic == topics.reports, value)
            assert expected[letter_id] in FAMILY_CODES[family], (family, expected[letter_id], value[:200])

    letters = dead_letters(bootstrap, topics, len(poisoned), timeout=120)
    by_id = {letter["deadletter_id"]: letter for letter in letters}
    missing = set(poisoned) - set(by_id)
    assert not missing, f"{len(missing)} malformed records not dead-lettered, e.g. {sorted(missing)[:3]}"
    assert set(by_id) == set(poisoned), "a valid record was dead-lettered"
    for letter_id, letter in by_id.items():
        assert letter["stage"] == ("detect" if expected[letter_id] == "unknown_kind" else "validate"), letter
        assert letter["reason"], letter
    # each dead letter names the reason of its own payload, as the decoders give it (not merely some known code)
    wrong = {
        i: (by_id[i]["reason_code"], expected[i], poisoned[i]) for i in by_id if by_id[i]["reason_code"] != expected[i]
    }
    assert not wrong, f"{len(wrong)} dead letters with another payload's reason, e.g. {list(wrong.values())[:5]}"
    assert len(set(expected.values())) >= 8, "the fuzz covers many reasons"
    assert sum(1 for letter in by_id.values() if letter.get("original_truncated") or letter.get("key_truncated")) >= 3

    ids = {f"fzv-{n}" for n in range(VALID_REPORTS)}
    result = outcome(bootstrap, topics, ids, timeout=60)
    assert not result.lost(ids) and not result.without_task() and not result.assigned_twice()
    text = worker.metrics()
    assert total(text, "cityloop_ingested_total", kind="reading") == VALID_READINGS
    assert total(text, "cityloop_ingested_total", kind="report") == VALID_REPORTS
    assert worker.process.poll() is None and worker.process.pid == pid
    assert (worker.health() or {}).get("status") == "ready"

    reasons = Counter(letter["reason_code"] for letter in by_id.values())
    figures(
        "poison-fuzz",
        sent=len(items),
        malformed=len(poisoned),
        valid=VALID_REPORTS + VALID_READINGS,
        processed=len(result.home) + VALID_READINGS,
        dead_lettered=len(by_id),
        dead_letter_records=len(letters),
        lost=len(missing),
        duplicated=len(letters) - len(by_id),
        worker_restarts=0,
        reasons=dict(reasons.most_common()),
        families=dict(Counter(poisoned.values()).most_common()),
    )
