"""Model files that are safe to load: skops (no pickle) inside a small zip with the model's metadata.

A model file is a zip holding ``metadata.json`` and ``pipeline.skops``. Loading never
unpickles anything: skops rebuilds the pipeline from a schema, and before it does, every
type named in that schema must be on :data:`MODEL_TYPES`, the exact list of types our
pipelines are made of. skops trusts many scikit-learn types by default; we are stricter
and refuse a file naming anything else, even a type skops would accept.

The metadata says what the model is (classes, temperature, pipeline name), what it was
trained on (row count and a sha256 of the normalised rows), how it scored, and with which
library versions. A file whose format, scikit-learn version, pipeline checksum or classes
do not match is refused with a :class:`ModelFileError` that says why. The checksum finds
damage and careless edits; it is not a signature, so keep model files where only the
people who train them can write.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import skops.io as sio
from sklearn.pipeline import Pipeline

from classifiers.errors import ModelFileError
from classifiers.text import TextClassifier, TrainingSummary

FORMAT = "cityloop-text-model"
FORMAT_VERSION = 1
METADATA_MEMBER = "metadata.json"
PIPELINE_MEMBER = "pipeline.skops"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "skops")

# Every type the candidate pipelines (classifiers.pipelines) are built from; nothing more.
MODEL_TYPES: frozenset[str] = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.tuple",
        "numpy.float32",
        "numpy.ndarray",
        "sklearn.pipeline.Pipeline",
        "sklearn.pipeline.FeatureUnion",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.naive_bayes.ComplementNB",
        "classifiers.features.CharNgramCounter",
    }
)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a model file depends on, as installed now."""
    versions = {name: version(name) for name in LIBRARIES}
    versions["python"] = platform.python_version()
    return versions


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about its model."""

    created_at: str
    classes: list[str]
    pipeline: str
    temperature: float
    calibration_folds: int
    training_rows: int
    training_sha256: str
    pipeline_sha256: str
    libraries: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_model(
    classifier: TextClassifier,
    path: Path | str,
    *,
    created_at: datetime,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> ModelMetadata:
    """Write ``classifier`` to ``path`` with its metadata; ``created_at`` must carry a time zone."""
    if created_at.tzinfo is None:
        raise ValueError("created_at needs a time zone")
    pipeline_bytes = sio.dumps(classifier.pipeline, compression=zipfile.ZIP_DEFLATED)
    summary = classifier.summary
    metadata = ModelMetadata(
        created_at=created_at.isoformat(),
        classes=list(classifier.classes),
        pipeline=summary.pipeline,
        temperature=summary.temperature,
        calibration_folds=summary.calibration_folds,
        training_rows=summary.rows,
        training_sha256=summary.sha256,
        pipeline_sha256=hashlib.sha256(pipeline_bytes).hexdigest(),
        libraries=library_versions(),
        metrics=dict(metrics or {}),
        source=source,
    )
    _check_types(pipeline_bytes)  # never write a file we would refuse to read
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(METADATA_MEMBER, json.dumps(metadata.as_dict(), indent=2, ensure_ascii=False))
        archive.writestr(PIPELINE_MEMBER, pipeline_bytes)  # stored: skops compressed it already
    return metadata


def read_metadata(path: Path | str) -> ModelMetadata:
    """The metadata of a model file, checked for format and completeness, without loading the model."""
    metadata, _ = _read(Path(path))
    return metadata


def load_model(path: Path | str) -> tuple[TextClassifier, ModelMetadata]:
    """The classifier in ``path`` and its metadata; :class:`ModelFileError` if anything does not match."""
    path = Path(path)
    metadata, pipeline_bytes = _read(path)
    if hashlib.sha256(pipeline_bytes).hexdigest() != metadata.pipeline_sha256:
        raise ModelFileError(f"{path}: the pipeline does not match the checksum in its metadata (damaged or edited)")
    trusted = _check_types(pipeline_bytes, str(path))
    try:
        pipeline = sio.loads(pipeline_bytes, trusted=sorted(trusted))
    except Exception as exc:  # skops raises many kinds on a bad schema; all mean the same here
        raise ModelFileError(f"{path}: skops could not rebuild the pipeline: {exc}") from exc
    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline, "classes_"):
        raise ModelFileError(f"{path}: the file does not hold a fitted scikit-learn pipeline")
    classes = [str(c) for c in pipeline.classes_]
    if classes != metadata.classes:
        raise ModelFileError(f"{path}: the model's classes {classes} differ from its metadata's {metadata.classes}")
    summary = TrainingSummary(
        metadata.pipeline,
        metadata.training_rows,
        metadata.training_sha256,
        metadata.temperature,
        metadata.calibration_folds,
    )
    return TextClassifier(pipeline, summary), metadata


def _read(path: Path) -> tuple[ModelMetadata, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            raw = json.loads(archive.read(METADATA_MEMBER))
            pipeline_bytes = archive.read(PIPELINE_MEMBER)
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {path}") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a CityLoop model file: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a CityLoop model file (format {raw.get('format')!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} is model format version {raw.get('format_version')}; this CityLoop reads version "
            f"{FORMAT_VERSION}: retrain it with `cityloop train`"
        )
    try:
        metadata = ModelMetadata(**raw)
    except TypeError as exc:
        raise ModelFileError(f"{path}: incomplete or unknown metadata: {exc}") from None
    if not (isinstance(metadata.temperature, int | float) and math.isfinite(metadata.temperature)) or (
        metadata.temperature <= 0
    ):
        raise ModelFileError(f"{path}: temperature {metadata.temperature!r} is not a positive number")
    _check_sklearn(metadata, path)
    return metadata, pipeline_bytes


def _check_sklearn(metadata: ModelMetadata, path: Path) -> None:
    # scikit-learn keeps no compatibility of fitted estimators across releases; bug-fix releases share a minor.
    saved = metadata.libraries.get("scikit-learn", "?")
    installed = version("scikit-learn")
    if saved.split(".")[:2] != installed.split(".")[:2]:
        raise ModelFileError(
            f"{path} was made with scikit-learn {saved}; this installation has {installed}: "
            "retrain it with `cityloop train`"
        )


def _schema_types(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            yield f"{node['__module__']}.{node['__class__']}"
        for value in node.values():
            yield from _schema_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_types(value)


def _check_types(pipeline_bytes: bytes, source: str = "the model") -> set[str]:
    """Every type the skops file names; refuses any not on MODEL_TYPES."""
    try:
        with zipfile.ZipFile(io.BytesIO(pipeline_bytes)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{source}: the pipeline is not a skops file: {exc}") from None
    named = set(_schema_types(schema))
    foreign = sorted(named - MODEL_TYPES)
    if foreign:
        raise ModelFileError(f"{source}: refusing to load types a CityLoop model does not use: {', '.join(foreign)}")
    untrusted_by_skops = set(sio.get_untrusted_types(data=pipeline_bytes))
    return untrusted_by_skops & MODEL_TYPES
