"""The model registry: immutable versions, an atomic pointer, broken files never made current, rollback."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from classifiers import seed_classifier
from classifiers.errors import ModelFileError
from classifiers.modelfile import save_model
from classifiers.registry import ModelRegistry, RegistryError
from tests.unit.classifiers.test_modelfile import _rewrite

AT = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "seed.cityloop"
    save_model(seed_classifier(), path, created_at=AT, source="seed")
    return path


@pytest.fixture
def damaged(model_file, tmp_path) -> Path:
    """A model file whose metadata reads but whose pipeline does not match its checksum."""
    return _rewrite(model_file, tmp_path / "damaged.cityloop", metadata=lambda m: {**m, "pipeline_sha256": "0" * 64})


def test_versions_are_numbered_immutable_copies(model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.versions() == [] and reg.current() is None and reg.stamp() is None
    assert [reg.publish(model_file), reg.publish(model_file)] == ["v0001", "v0002"]
    assert reg.versions() == ["v0001", "v0002"]
    assert reg.path_of("v0001").read_bytes() == model_file.read_bytes()
    assert not os.access(reg.path_of("v0001"), os.W_OK) or os.geteuid() == 0  # read-only (root writes anyway)
    assert not [p for p in reg.models.iterdir() if p.name.startswith(".tmp-")]  # no temporary file left


def test_promote_replaces_the_pointer_atomically_and_records_why(model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    v1, v2 = reg.publish(model_file), reg.publish(model_file)
    reg.promote(v1, at=AT, why="first")
    before = reg.stamp()
    reg.promote(v2, at=AT, why="better", scores={"macro_f1": 0.9})
    assert reg.current() == "v0002"
    assert reg.stamp().inode != before.inode  # a new file renamed over the old one, never rewritten in place
    assert [(e["version"], e["previous"], e["why"]) for e in reg.history()] == [
        ("v0001", None, "first"),
        ("v0002", "v0001", "better"),
    ]
    assert sorted(p.name for p in reg.root.iterdir()) == ["CURRENT", "history.jsonl", "models"]


def test_a_file_that_does_not_load_is_never_made_current(model_file, damaged, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    good = reg.publish(model_file)
    reg.promote(good, at=AT, why="good")
    broken = reg.publish(damaged)  # its metadata reads, so it gets a version; its pipeline does not match
    with pytest.raises(ModelFileError, match="checksum"):
        reg.promote(broken, at=AT, why="bad")
    assert reg.current() == good and len(reg.history()) == 1


def test_something_that_is_not_a_model_gets_no_version(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    junk = tmp_path / "junk.cityloop"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError):
        reg.publish(junk)
    assert reg.versions() == []
    with pytest.raises(RegistryError, match="no version"):
        reg.promote("v0007", at=AT, why="?")
    with pytest.raises(RegistryError, match="not a version name"):
        reg.path_of("../etc/passwd")


def test_rollback_returns_to_the_version_current_before(model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="nothing was promoted"):
        reg.rollback(at=AT)
    v1, v2 = reg.publish(model_file), reg.publish(model_file)
    reg.promote(v1, at=AT, why="first")
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback(at=AT)
    reg.promote(v2, at=AT, why="second")
    assert reg.rollback(at=AT) == v1
    assert reg.current() == v1
    assert reg.history()[-1]["why"] == "rollback (from v0002)"
    assert reg.rollback(at=AT) == v2  # undoes the rollback


def test_rollback_refuses_when_the_pointer_was_changed_by_hand(model_file, tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    v1, v2 = reg.publish(model_file), reg.publish(model_file)
    reg.promote(v1, at=AT, why="first")
    reg.promote(v2, at=AT, why="second")
    reg.pointer.write_text("v0001\n")
    with pytest.raises(RegistryError, match="changed outside the registry's history"):
        reg.rollback(at=AT)


def test_two_trainers_publishing_at_once_never_overwrite_a_version(model_file, damaged, tmp_path, monkeypatch):
    reg = ModelRegistry(tmp_path / "reg")
    first = reg.publish(model_file)
    real = reg.versions
    calls: list[int] = []

    def listed_before_the_first_published() -> list[str]:
        calls.append(1)
        return [] if len(calls) == 1 else real()

    monkeypatch.setattr(reg, "versions", listed_before_the_first_published)
    second = reg.publish(damaged)
    assert (first, second) == ("v0001", "v0002")
    assert reg.path_of("v0001").read_bytes() == model_file.read_bytes()
    assert reg.path_of("v0002").read_bytes() == damaged.read_bytes()


def test_a_damaged_pointer_is_an_error_not_a_version(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    reg.root.mkdir()
    reg.pointer.write_text("../../somewhere\n")
    with pytest.raises(RegistryError, match="not a version"):
        reg.current()
