"""Model files: a saved model loads back identical, and a damaged, edited or foreign file is refused."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from classifiers import seed_classifier
from classifiers.errors import ModelFileError
from classifiers.modelfile import (
    METADATA_MEMBER,
    PIPELINE_MEMBER,
    library_versions,
    load_model,
    read_metadata,
    save_model,
)
from classifiers.pipelines import CANDIDATES
from classifiers.text import TextClassifier, seed_corpus, training_sha256

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TEXTS = ["deep pothole by the school", "Farola apagada", "垃圾桶满了", "Громкая музыка ночью", "<i>tree down</i>"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "seed.cityloop"
    save_model(seed_classifier(), path, created_at=CREATED, metrics={"holdout": {"accuracy": 0.5}}, source="seed")
    return path


def _rewrite(source: Path, target: Path, *, metadata=None, pipeline: bytes | None = None) -> Path:
    """Copy a model file, replacing its metadata (a function of the old one) and/or its pipeline bytes."""
    with zipfile.ZipFile(source) as archive:
        meta = json.loads(archive.read(METADATA_MEMBER))
        body = archive.read(PIPELINE_MEMBER)
    if pipeline is not None:
        body = pipeline
    if metadata is not None:
        meta = metadata(meta)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(METADATA_MEMBER, json.dumps(meta))
        archive.writestr(PIPELINE_MEMBER, body)
    return target


def test_round_trip_gives_the_same_answers_and_metadata(saved):
    """A loaded model answers exactly as the saved one, and the metadata says what it is."""
    model, metadata = load_model(saved)
    assert model.predict(TEXTS) == seed_classifier().predict(TEXTS)
    assert metadata.classes == list(seed_classifier().classes)
    assert metadata.created_at == "2026-03-01T12:00:00+00:00"
    assert metadata.training_sha256 == training_sha256(*seed_corpus())
    assert metadata.training_rows == len(seed_corpus()[0])
    assert metadata.metrics == {"holdout": {"accuracy": 0.5}}
    assert set(metadata.libraries) == {"scikit-learn", "numpy", "scipy", "skops", "python"}
    assert metadata.libraries == library_versions()
    assert read_metadata(saved) == metadata


def test_training_hash_sees_the_normalised_rows():
    """The training fingerprint ignores markup and case but not a changed label or order."""
    assert training_sha256(["<b>Big HOLE</b>"], ["pothole"]) == training_sha256(["big hole"], ["pothole"])
    assert training_sha256(["big hole"], ["pothole"]) != training_sha256(["big hole"], ["flooding"])
    assert training_sha256(["a", "b"], ["x", "y"]) != training_sha256(["b", "a"], ["y", "x"])


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_every_candidate_pipeline_round_trips(name, tmp_path):
    """Each candidate is made only of allowed types, so each can be saved and loaded."""
    texts, labels = seed_corpus()
    model = TextClassifier.train(texts, labels, pipeline=name, calibration_folds=0)
    save_model(model, tmp_path / "m.cityloop", created_at=CREATED)
    loaded, _ = load_model(tmp_path / "m.cityloop")
    assert loaded.predict(TEXTS) == model.predict(TEXTS)


def test_created_at_needs_a_time_zone(tmp_path):
    with pytest.raises(ValueError, match="time zone"):
        save_model(seed_classifier(), tmp_path / "m.cityloop", created_at=datetime(2026, 1, 1))


def test_refuses_an_edited_pipeline(saved, tmp_path):
    """Bytes changed after saving no longer match the checksum in the metadata."""
    with zipfile.ZipFile(saved) as archive:
        body = bytearray(archive.read(PIPELINE_MEMBER))
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(_rewrite(saved, tmp_path / "edited.cityloop", pipeline=bytes(body)))


def test_refuses_metadata_whose_classes_differ_from_the_model(saved, tmp_path):
    """Metadata naming other classes than the model has is a mismatch, not a model to use."""

    def rename(meta):
        meta["classes"] = [c.upper() for c in meta["classes"]]
        return meta

    with pytest.raises(ModelFileError, match="classes"):
        load_model(_rewrite(saved, tmp_path / "renamed.cityloop", metadata=rename))


def test_refuses_a_pipeline_with_types_a_model_does_not_use(saved, tmp_path):
    """A forged file with a consistent checksum but a callable inside (builtins.eval) is refused unread."""
    forged = Pipeline([("evil", FunctionTransformer(eval))])
    body = sio.dumps(forged)

    def matching(meta):
        meta["pipeline_sha256"] = hashlib.sha256(body).hexdigest()
        return meta

    with pytest.raises(ModelFileError, match="builtins.eval"):
        load_model(_rewrite(saved, tmp_path / "forged.cityloop", metadata=matching, pipeline=body))


def test_refuses_another_scikit_learn_release(saved, tmp_path):
    """A model made with another scikit-learn minor release must be retrained."""

    def older(meta):
        meta["libraries"]["scikit-learn"] = "0.24.2"
        return meta

    with pytest.raises(ModelFileError, match="scikit-learn 0.24.2.*retrain"):
        load_model(_rewrite(saved, tmp_path / "old.cityloop", metadata=older))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, "format_version": 2}, "format version 2"),
        (lambda m: {**m, "format": "something-else"}, "not a CityLoop model file"),
        (lambda m: {**m, "temperature": -1}, "temperature"),
        (lambda m: {k: v for k, v in m.items() if k != "classes"}, "incomplete"),
    ],
)
def test_refuses_unknown_format_or_bad_metadata(saved, tmp_path, change, message):
    with pytest.raises(ModelFileError, match=message):
        load_model(_rewrite(saved, tmp_path / "bad.cityloop", metadata=change))


def test_refuses_a_missing_file_or_one_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        load_model(tmp_path / "absent.cityloop")
    (tmp_path / "text.cityloop").write_text("hello")
    with pytest.raises(ModelFileError, match="not a CityLoop model file"):
        load_model(tmp_path / "text.cityloop")
