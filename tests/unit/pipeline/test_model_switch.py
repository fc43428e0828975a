"""A worker switches text models between batches: the version is recorded; a broken version is refused.

The engine part runs on in-memory stores (tests/unit/pipeline/conftest.py); the watcher part on a real registry
directory with real model files. The integration test (tests/integration/test_learning_loop.py) runs it all on
the broker.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from classifiers import seed_classifier
from classifiers.modelfile import save_model
from classifiers.registry import ModelRegistry
from classifiers.triage import TriagePolicy
from streams import metrics
from streams.ids import report_incident
from streams.modelwatch import ModelWatch
from streams.settings import load_settings
from tests.unit.classifiers.test_modelfile import _rewrite
from tests.unit.pipeline.conftest import Words, report

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_model_version_is_recorded_and_a_new_model_classifies_the_next_batch(loop):
    loop.engine.use_model(loop.engine.classify.classifier, TriagePolicy(0.5), "v0001")
    asyncio.run(loop.reports(report(1, code=None, text="maybe paint on the wall")))
    [needed] = loop.sink.on("feedback", "triage_needed")
    [waiting] = loop.sink.on("incidents")
    assert needed["model_version"] == "v0001" and waiting["model_version"] == "v0001"
    assert waiting["status"] == "triage"

    loop.engine.use_model(Words({"maybe": ("graffiti", 0.95)}), TriagePolicy(0.9), "v0002")
    asyncio.run(loop.reports(report(2, code=None, text="maybe paint on the wall", lat=52.0)))
    opened = [r for r in loop.sink.on("incidents") if r["incident_id"] == report_incident("r-2")]
    assert [(r["status"], r["category"], r["model_version"]) for r in opened] == [("open", "graffiti", "v0002")]
    [dispatched] = loop.sink.on("feedback", "dispatched")
    assert dispatched["text"] == "maybe paint on the wall"  # what a later recategorisation labels
    counts = loop.sensor.counts
    assert counts["classified", "text_model"] == 2


def test_a_repeat_joined_under_a_newer_model_keeps_the_openers_version_on_the_incident(loop):
    loop.engine.use_model(Words({"hole": ("pothole", 0.95)}), TriagePolicy(0.5), "v0002")
    asyncio.run(loop.reports(report(1, code=None, text="deep hole in the road")))
    loop.engine.use_model(Words({"hole": ("pothole", 0.97)}), TriagePolicy(0.5), "v0003")
    asyncio.run(loop.reports(report(2, code=None, text="deep hole in the road again")))
    [merged] = loop.sink.on("feedback", "merged")
    assert merged["source_id"] == "report:r-2" and merged["model_version"] == "v0003", "the model that read the repeat"
    records = [r for r in loop.sink.on("incidents") if r["incident_id"] == report_incident("r-1")]
    assert [(r["source_count"], r["classified_by"], r.get("model_version")) for r in records] == [
        (1, "text_model", "v0002"),
        (2, "text_model", "v0002"),  # the joined incident still names the model that classified its opener
    ]


def test_a_report_classified_by_its_service_code_carries_no_model_version(loop):
    asyncio.run(loop.reports(report(1)))
    [incident] = loop.sink.on("incidents")
    assert incident["classified_by"] == "service_code" and "model_version" not in incident


class Engine:
    def __init__(self) -> None:
        self.used: list[str] = []

    def use_model(self, classifier, triage_policy, version) -> None:
        self.used.append(version)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.cityloop"
    save_model(seed_classifier(), path, created_at=AT, metrics={"triage": {"default_threshold": 0.4, "thresholds": {}}})
    return path


def reloads(outcome: str) -> float:
    return metrics.MODEL_RELOADS.labels(outcome)._value.get()


def test_the_watcher_switches_to_a_promoted_version_and_refuses_a_broken_one(pack, model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    settings = load_settings(model_registry=reg.root, model_poll_s=1)
    watch, engine = ModelWatch(reg, settings, pack), Engine()
    assert watch.load_current() is None  # nothing promoted: the worker starts with its seed or file model
    watch.attach(engine, "seed")
    assert asyncio.run(watch.check()) is False and engine.used == []

    good = reg.publish(model_file)
    reg.promote(good, at=AT, why="test")
    loaded_before, refused_before = reloads("loaded"), reloads("refused")
    assert asyncio.run(watch.check()) is True
    assert engine.used == ["v0001"] and watch.version == "v0001"
    assert asyncio.run(watch.check()) is False  # nothing changed: one stat, no reload
    assert 'cityloop_model_info{version="v0001"} 1.0' in _exposition()
    assert 'version="seed"' not in _exposition()

    # a damaged file made current behind the registry's back (a disk error, a hand-edited pointer)
    broken = reg.publish(_rewrite(model_file, tmp_path / "bad.cityloop",
                                  metadata=lambda m: {**m, "pipeline_sha256": "0" * 64}))  # fmt: skip
    reg.pointer.write_text(f"{broken}\n")
    assert asyncio.run(watch.check()) is False
    assert engine.used == ["v0001"] and watch.version == "v0001"  # the old model keeps classifying
    assert (reloads("loaded") - loaded_before, reloads("refused") - refused_before) == (1, 1)
    assert asyncio.run(watch.check()) is False  # a refused file is not read again until CURRENT changes
    assert reloads("refused") - refused_before == 1

    fresh = ModelWatch(reg, settings, pack)  # a worker starting now: refuses it too, and starts with its own
    assert fresh.load_current() is None and reloads("refused") - refused_before == 2


def test_a_worker_starts_with_the_registrys_current_version_and_its_thresholds(pack, model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    reg.promote(reg.publish(model_file), at=AT, why="test")
    loaded = ModelWatch(reg, load_settings(model_registry=reg.root), pack).load_current()
    assert loaded is not None and loaded.version == "v0001" and loaded.policy.default_threshold == 0.4


def _exposition() -> str:
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY).decode()
