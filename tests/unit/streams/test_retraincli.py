"""cityloop retrain and cityloop model without a broker: the feedback read is replaced by a fixed set of decisions.

The broker read itself runs in tests/integration/test_learning_loop.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from classifiers.examples import fold
from classifiers.modelfile import read_metadata
from classifiers.registry import ModelRegistry
from classifiers.text import seed_corpus
from streams import retraincli
from streams.cli import main

PLACES = ["bus shelter", "school gate", "library", "bridge", "car park", "shop front", "church", "tram stop",
          "bench", "post box", "station", "playground"]  # fmt: skip
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def decisions(count: int) -> list[dict]:
    """The ops centre relabelling what the seed model calls illegal_dumping: this city files e-scooters as parking."""
    return [
        {"type": "triaged", "incident_id": f"inc-{i}", "category": "illegal_parking",
         "text": f"{i + 2} rental e-scooters abandoned by the {PLACES[i % len(PLACES)]}",
         "at": (START + timedelta(minutes=i)).isoformat()}
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture
def feedback(monkeypatch):
    records: list[dict] = []
    monkeypatch.setattr(retraincli, "read_feedback", lambda settings: fold(records))
    return records


def run(registry, *args: str):
    env = {"CITYLOOP_MODEL_REGISTRY": str(registry), "CITYLOOP_TRIAGE_THRESHOLD": "0.999"}
    return CliRunner().invoke(main, ["retrain", "--json", *args], env=env)


def test_a_challenger_that_beats_the_champion_is_published_and_promoted(feedback, tmp_path):
    feedback += decisions(12)
    result = run(tmp_path / "reg")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["decisions"] == {"triaged": 12, "recategorise": 0} and out["held_out"] == 5  # --min-recent 5
    assert out["champion"]["version"] == "seed" and out["champion"]["macro_f1"] < out["challenger"]["macro_f1"]
    assert (out["version"], out["promoted"]) == ("v0001", True)
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.current() == "v0001" and reg.history()[0]["scores"]["challenger"] == out["challenger"]
    # the held-out decisions were not learnt from: the seed corpus's rows and the 7 older decisions
    assert read_metadata(reg.path_of("v0001")).training_rows == len(seed_corpus()[0]) + 7


def test_a_challenger_no_better_is_published_but_not_promoted_unless_forced(feedback, tmp_path):
    feedback += decisions(12)
    assert json.loads(run(tmp_path / "reg").stdout)["promoted"]
    again = json.loads(run(tmp_path / "reg").stdout)  # the same decisions: v0001 already gets them all right
    assert again["champion"]["version"] == "v0001" and not again["challenger_wins"]
    assert (again["version"], again["promoted"]) == ("v0002", False)
    assert ModelRegistry(tmp_path / "reg").current() == "v0001"
    forced = json.loads(run(tmp_path / "reg", "--force").stdout)
    assert (forced["version"], forced["promoted"]) == ("v0003", True)
    assert ModelRegistry(tmp_path / "reg").current() == "v0003"


def test_a_dry_run_publishes_nothing(feedback, tmp_path):
    feedback += decisions(12)
    out = json.loads(run(tmp_path / "reg", "--dry-run").stdout)
    assert out["challenger_wins"] and (out["version"], out["promoted"]) == (None, False)
    assert ModelRegistry(tmp_path / "reg").versions() == []


def test_too_few_decisions_or_no_registry_is_one_clear_line(feedback, tmp_path):
    feedback += decisions(4)
    few = run(tmp_path / "reg")
    assert few.exit_code == 1
    assert few.output.strip().splitlines()[-1] == (
        "Error: 4 ops examples; retraining needs more than --min-recent 5 (some to learn from, some to compare on)"
    )
    nowhere = CliRunner().invoke(main, ["retrain"], env={"CITYLOOP_MODEL_REGISTRY": ""})
    assert nowhere.exit_code == 2 and "give --registry or set CITYLOOP_MODEL_REGISTRY" in nowhere.output


def test_model_list_promote_and_rollback(feedback, tmp_path):
    feedback += decisions(12)
    run(tmp_path / "reg")
    run(tmp_path / "reg")  # v0002, not promoted
    env = {"CITYLOOP_MODEL_REGISTRY": str(tmp_path / "reg")}
    listed = CliRunner().invoke(main, ["model", "list"], env=env)
    assert listed.output.splitlines()[0].startswith("* v0001  promoted ")
    assert listed.output.splitlines()[1] == "  v0002  never promoted"
    assert CliRunner().invoke(main, ["model", "promote", "v0002"], env=env).output == "v0002 is current\n"
    assert CliRunner().invoke(main, ["model", "rollback"], env=env).output == "rolled back: v0001 is current\n"
    missing = CliRunner().invoke(main, ["model", "promote", "v0009"], env=env)
    assert missing.exit_code == 1 and "no version v0009" in missing.output
