"""The learning loop end to end on the broker: the ops centre's decisions train a model that a running worker uses.

Reports the seed model gets confidently wrong for this city ("rental e-scooters abandoned by the bridge":
illegal_dumping, 0.97; this city files them under illegal_parking) wait for a person under a cautious threshold; the
ops centre decides illegal_parking for each, on the feedback
topic as the board or `cityloop triage decide` would; `cityloop retrain` learns from those decisions, beats the
seed on the newest of them and promotes its challenger; the worker, still the same process, switches to it, and
the next such reports are dispatched automatically, their incidents naming the new version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.ids import stable_id
from tests.integration.conftest import collect, wait_for

pytestmark = pytest.mark.integration

PLACES = ["bus shelter", "school gate", "library", "bridge", "car park", "shop front", "church", "tram stop",
          "bench", "post box", "station", "playground", "town hall", "market"]  # fmt: skip
LATER = ["cinema", "canal", "swimming pool"]


def point(i: int) -> tuple[float, float]:
    """Points about 330 m apart, so that no two reports merge into one incident."""
    return 51.98 + (i % 5) * 0.003, 5.05 + (i // 5) * 0.005


def send_reports(producer, topics, texts: list[str], first: int) -> list[str]:
    ids = []
    for i, text in enumerate(texts, start=first):
        lat, lon = point(i)
        report = {"report_id": f"m-{i}", "source": "app", "text": text, "lat": lat, "lon": lon,
                  "reported_at": datetime.now(UTC).isoformat()}  # fmt: skip
        producer.send(topics.reports, key=report["report_id"].encode(), value=json.dumps(report).encode())
        ids.append(stable_id("inc", "report", report["report_id"]))
    producer.flush()
    return ids


def events(bootstrap: str, topic: str, kind: str, count: int, timeout: float = 60) -> list[dict]:
    def enough(records: list) -> bool:
        return sum(json.loads(m.value).get("type") == kind for m in records) >= count

    records = collect(bootstrap, topic, enough, timeout=timeout)
    return [r for r in (json.loads(m.value) for m in records) if r.get("type") == kind]


def latest(bootstrap: str, topic: str) -> dict[str, dict]:
    result: dict[str, dict] = {}
    for message in collect(bootstrap, topic, lambda rs: False, timeout=1):
        record = json.loads(message.value)
        result[record["incident_id"]] = record
    return result


def test_ops_decisions_train_a_model_that_the_running_worker_switches_to(
    workers, producer, topics, bootstrap, tmp_path
):
    registry = tmp_path / "registry"
    settings = {"CITYLOOP_MODEL_REGISTRY": str(registry), "CITYLOOP_TRIAGE_THRESHOLD": "0.999"}
    worker = workers.start(CITYLOOP_MODEL_POLL_S="1", **settings)
    texts = [f"{i + 2} rental e-scooters abandoned by the {place}" for i, place in enumerate(PLACES)]
    waiting = send_reports(producer, topics, texts, first=0)

    # under the seed model every one of them waits for a person, and says which model sent it there
    needed = events(bootstrap, topics.feedback, "triage_needed", len(texts))
    assert sorted(e["incident_id"] for e in needed) == sorted(waiting)
    assert {e["model_version"] for e in needed} == {"seed"}
    guesses = {e["guess"] for e in needed}  # illegal_dumping, and abandoned_vehicle by the car park
    assert guesses and "illegal_parking" not in guesses, guesses

    for incident_id in waiting:  # the ops centre decides, on the feedback topic (as the board and the CLI do)
        decision = {"type": "triage_decision", "incident_id": incident_id, "category": "illegal_parking",
                    "decided_by": "ana", "at": datetime.now(UTC).isoformat()}  # fmt: skip
        producer.send(topics.feedback, key=incident_id.encode(), value=json.dumps(decision).encode())
    producer.flush()
    assert len(events(bootstrap, topics.feedback, "triaged", len(waiting))) == len(waiting)

    env = {"CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_TOPIC_PREFIX": topics.prefix, **settings}
    retrained = CliRunner().invoke(main, ["retrain", "--json"], env=env)
    assert retrained.exit_code == 0, retrained.output
    result = json.loads(retrained.stdout)
    assert (result["examples"], result["held_out"], result["skipped"]) == (14, 5, {})
    assert result["champion"]["version"] == "seed" and result["champion"]["macro_f1"] == 0.0
    assert result["challenger"]["macro_f1"] == 1.0 and result["challenger_wins"]
    assert (result["version"], result["promoted"]) == ("v0001", True)

    # the same worker process switches at its next poll: no restart
    def switched() -> bool:
        return 'cityloop_model_info{version="v0001"} 1.0' in worker.metrics()

    assert wait_for(switched, timeout=30), worker.log()[-3000:]
    assert worker.process.poll() is None
    scrape = worker.metrics()
    assert 'cityloop_model_reloads_total{outcome="loaded"} 1.0' in scrape
    assert 'cityloop_model_info{version="seed"}' not in scrape

    later = send_reports(producer, topics, [f"rental e-scooters abandoned by the {p}" for p in LATER], first=len(texts))
    tasks = collect(bootstrap, topics.tasks, lambda rs: {json.loads(m.value)["incident_id"] for m in rs} >= set(later),
                    timeout=60)  # fmt: skip
    assert set(later) <= {json.loads(m.value)["incident_id"] for m in tasks}
    incidents = latest(bootstrap, topics.incidents)
    for incident_id in later:
        record = incidents[incident_id]
        assert (record["status"], record["category"], record["classified_by"], record["model_version"]) == (
            "open",
            "illegal_parking",
            "text_model",
            "v0001",
        ), record
    assert 'cityloop_text_model_outcomes_total{outcome="automatic"} 3.0' in worker.metrics()

    # the ops centre recategorises one of them; the next retraining reads it as an example with the report's text
    task = next(json.loads(m.value) for m in tasks if json.loads(m.value)["incident_id"] == later[0])
    change = {"schema": 1, "event_id": "evt-recat-1", "type": "recategorise", "incident_id": later[0],
              "task_id": task["task_id"], "unit_id": task["unit_id"], "actor": "ops:ana", "attempt": 1,
              "category": "litter", "reason": "bin bags", "at": datetime.now(UTC).isoformat()}  # fmt: skip
    producer.send(topics.feedback, key=later[0].encode(), value=json.dumps(change).encode())
    producer.flush()
    redispatched = events(bootstrap, topics.feedback, "dispatched", len(waiting) + len(later) + 1)
    assert any(e["incident_id"] == later[0] and e["attempt"] == 2 for e in redispatched)  # the worker applied it
    dry = CliRunner().invoke(main, ["retrain", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    again = json.loads(dry.stdout)
    assert again["decisions"] == {"triaged": 14, "recategorise": 1} and again["examples"] == 15
    assert again["skipped"] == {} and again["champion"]["version"] == "v0001" and again["version"] is None
