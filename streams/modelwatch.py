"""The worker's side of the model registry: start with its current version, switch to a new one without a restart.

Every ``CITYLOOP_MODEL_POLL_S`` (10 s) the watcher stats the registry's ``CURRENT`` pointer (one ``stat``; no
read unless it changed). A new version is loaded on a thread (a model file takes a second or so to check and
rebuild; the event loop keeps heartbeating) and handed to the engine under the lock the reports handler holds
for each batch, so every batch is classified by one model from start to end. A version that does not load (damaged,
another scikit-learn, foreign types) is refused: a log line, ``cityloop_model_reloads_total{outcome="refused"}``,
and the running model goes on; the watcher tries a refused file again only when ``CURRENT`` changes again (a
file system error, rather than a bad file, is tried again at the next poll).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from classifiers import TextClassifier
from classifiers.errors import ClassifierError
from classifiers.registry import ModelRegistry, Stamp
from classifiers.triage import TriagePolicy
from dispatch import CityPack
from streams import metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class UsesModel(Protocol):
    def use_model(self, classifier: TextClassifier, triage_policy: TriagePolicy, version: str) -> None: ...


@dataclass(frozen=True)
class LoadedModel:
    classifier: TextClassifier
    policy: TriagePolicy
    version: str


def baseline_version(settings: Settings) -> str:
    """The version name of the model a worker has without a registry version: ``seed`` or ``file:<name>``."""
    return "seed" if settings.model is None else f"file:{settings.model.name}"


def load_version(registry: ModelRegistry, version: str, settings: Settings, pack: CityPack) -> LoadedModel:
    """A registry version with the triage thresholds saved with it (else the worker's threshold)."""
    from classifiers.modelfile import load_model  # skops imports: for model files only

    classifier, metadata = load_model(registry.path_of(version))
    unknown = sorted(set(classifier.classes) - {c.code for c in pack.spec.categories})
    if unknown:
        log.warning("model %s knows categories that %s does not: %s (such reports go to triage)",
                    version, pack.name, ", ".join(unknown[:20]))  # fmt: skip
    trained = metadata.metrics.get("triage")
    policy = TriagePolicy.from_dict(trained) if trained else TriagePolicy(settings.triage_threshold)
    return LoadedModel(classifier, policy, version)


def show_version(version: str, previous: str | None = None) -> None:
    """``cityloop_model_info``: one series, the version in use (the previous one's series removed)."""
    if previous is not None and previous != version:
        try:
            metrics.MODEL_INFO.remove(previous)
        except KeyError:
            pass
    metrics.MODEL_INFO.labels(version).set(1)


class ModelWatch:
    """Polls the registry and swaps the engine's model between batches (module docstring)."""

    def __init__(self, registry: ModelRegistry, settings: Settings, pack: CityPack) -> None:
        self.registry = registry
        self.settings = settings
        self.pack = pack
        self.between_batches = asyncio.Lock()  # the reports handler holds it for each batch
        self.version: str | None = None
        self._stamp: Stamp | None = None
        self._engine: UsesModel | None = None
        for outcome in ("loaded", "refused"):
            metrics.MODEL_RELOADS.labels(outcome)
        for outcome in ("automatic", "triage"):
            metrics.TEXT_MODEL_OUTCOMES.labels(outcome)

    def load_current(self) -> LoadedModel | None:
        """At start: the registry's current version, or None (nothing promoted yet, or it does not load)."""
        self._stamp = self.registry.stamp()
        try:
            version = self.registry.current()
            if version is None:
                log.info("model registry %s has no current version yet; starting with the %s model",
                         self.registry.root, baseline_version(self.settings))  # fmt: skip
                return None
            loaded = load_version(self.registry, version, self.settings, self.pack)
        except (ClassifierError, OSError) as exc:
            metrics.MODEL_RELOADS.labels("refused").inc()
            log.error("model registry %s: current version refused (%s); starting with the %s model",
                      self.registry.root, exc, baseline_version(self.settings))  # fmt: skip
            return None
        log.info("text model %s from the registry %s", loaded.version, self.registry.root)
        return loaded

    def attach(self, engine: UsesModel, version: str) -> None:
        self._engine = engine
        self.version = version
        show_version(version)

    async def run(self) -> None:
        """Poll until cancelled; an unexpected error is logged and the next poll goes on."""
        interval = self.settings.model_poll_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a watcher that dies silently would pin the old model forever
                log.exception("model registry check failed; trying again in %.0f s", interval)

    async def check(self) -> bool:
        """One poll: True when a new version was switched to."""
        stamp = await asyncio.to_thread(self.registry.stamp)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            version = await asyncio.to_thread(self.registry.current)
            if version is None or version == self.version:
                return False
            loaded = await asyncio.to_thread(load_version, self.registry, version, self.settings, self.pack)
        except (ClassifierError, OSError) as exc:
            metrics.MODEL_RELOADS.labels("refused").inc()
            log.error("model registry: new current version refused (%s); %s keeps classifying", exc, self.version)
            if isinstance(exc, OSError):  # the volume, not the file (NFS away, permissions): try again next poll
                self._stamp = None
            return False
        assert self._engine is not None
        async with self.between_batches:
            self._engine.use_model(loaded.classifier, loaded.policy, loaded.version)
            previous, self.version = self.version, loaded.version
        show_version(loaded.version, previous)
        metrics.MODEL_RELOADS.labels("loaded").inc()
        log.info("text model switched from %s to %s (no restart)", previous, loaded.version)
        return True


def watch_for(settings: Settings, pack: CityPack) -> ModelWatch | None:
    return ModelWatch(ModelRegistry(settings.model_registry), settings, pack) if settings.model_registry else None
