"""``cityloop retrain`` and ``cityloop model``: learn from the ops centre's decisions, and keep the model registry.

Where the examples come from: the feedback topic itself, read from its start by ``retrain``. The stream is already
the durable, ordered record of every ``triaged`` and ``recategorise`` event (and the ``dispatched`` events carry the
text a recategorisation relabels); reading it needs no new write in the worker's hot path and no second copy that
could drift from the log. The cost is a read of the topic per retraining (kafka-python read 100,000 feedback
records in 8.7 s from the dev broker on two cores, connection included), and that examples older than the
topic's retention are gone: set the feedback topic's retention to the history a retraining should see
(docs/OPERATIONS.md).

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from streams.console import deployment_options, settings_from_flags
from streams.modelcli import DELIMITER_NAMES, PIPELINES, TRIAGE_TARGET_PRECISION, data_options, progress, read_rows

if TYPE_CHECKING:
    from classifiers.examples import ExampleFolder
    from classifiers.registry import ModelRegistry
    from classifiers.text import TextClassifier
    from classifiers.triage import TriagePolicy
    from streams.settings import Settings

READ_TIMEOUT_S = 300.0


def read_feedback(settings: Settings) -> ExampleFolder:
    """Every labelled example on the feedback topic, read from the oldest record to the end as it was at the start.

    The end is each partition's end offset when the read starts; a record batch is fetched whole, so on the dev
    broker, whose end offsets can stop at a batch's first record, the rest of that batch comes along.
    """
    from kafka import TopicPartition

    from classifiers.examples import ExampleFolder
    from streams.connect import topic_consumer
    from streams.topics import Topics

    topic = Topics(settings.topic_prefix).feedback
    consumer: Any = topic_consumer(
        settings.kafka,
        topic,
        settings.connect_timeout_s,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",  # an exactly-once deployment's aborted attempts are no decisions
    )
    folder = ExampleFolder()
    try:
        consumer.unsubscribe()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        total, deadline = 0, time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise click.ClickException(f"reading {topic} took over {READ_TIMEOUT_S:.0f} s; is the broker slow?")
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    try:
                        record = json.loads(message.value)
                    except (TypeError, ValueError):
                        folder.unreadable()
                        continue
                    if isinstance(record, dict):
                        folder.add(record)
                    else:
                        folder.unreadable()
                total += len(batch)
        progress(f"read {total:,} records of {topic} ({len(partitions)} partitions)")
    finally:
        consumer.close()
    return folder


def champion_model(registry: ModelRegistry | None, settings: Settings) -> tuple[TextClassifier, TriagePolicy, str]:
    """The model the workers run now: the registry's current version, else CITYLOOP_MODEL, else the seed."""
    from classifiers import seed_classifier
    from classifiers.modelfile import load_model
    from classifiers.triage import TriagePolicy

    version = registry.current() if registry is not None else None
    if version is not None:
        path, name = registry.path_of(version), version  # type: ignore[union-attr]
    elif settings.model is not None:
        path, name = settings.model, f"file:{settings.model.name}"
    else:
        return seed_classifier(), TriagePolicy(settings.triage_threshold), "seed"
    classifier, metadata = load_model(path)
    saved = metadata.metrics.get("triage")
    return classifier, TriagePolicy.from_dict(saved) if saved else TriagePolicy(settings.triage_threshold), name


def _registry_option(command: Any) -> Any:
    return click.option(
        "--registry",
        type=click.Path(file_okay=False, path_type=Path),
        help="Model registry directory [env CITYLOOP_MODEL_REGISTRY].",
    )(command)


def _registry(registry: Path | None, settings: Settings) -> ModelRegistry:
    from classifiers.registry import ModelRegistry

    root = registry or settings.model_registry
    if root is None:
        raise click.UsageError("no model registry: give --registry or set CITYLOOP_MODEL_REGISTRY")
    return ModelRegistry(root)


@click.command()
@deployment_options("kafka", "prefix", "wait")
@_registry_option
@data_options(required=False, base_help="Base history CSV; repeat for several [the seed corpus].")
@click.option("--label-col", default="category", show_default=True, help="Column with the category in --data.")
@click.option(
    "--recent",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0.05, 0.9),
    help="Share of the ops examples, the newest, held out to compare the two models.",
)
@click.option("--min-recent", default=5, show_default=True, type=click.IntRange(min=1), help="Fewest held out.")
@click.option("--min-count", default=1, show_default=True, type=click.IntRange(min=1), help="As for train.")
@click.option("--pipeline", default=PIPELINES[0], show_default=True, type=click.Choice(PIPELINES))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Promote the challenger even if it does not win.")
@click.option("--dry-run", is_flag=True, help="Train and compare; publish and promote nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def retrain(
    registry: Path | None,
    data: tuple[Path, ...],
    text_cols: tuple[str, ...],
    label_col: str,
    encoding: str,
    delimiter: str,
    recent: float,
    min_recent: int,
    min_count: int,
    pipeline: str,
    seed: int,
    force: bool,
    dry_run: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Train a challenger on the base history plus the ops centre's decisions; promote it if it beats the champion.

    The newest --recent share of the decisions is held out of the challenger's training; both models are scored
    on those rows. The challenger is promoted when its macro-F1 there is higher, or equal with higher accuracy
    (--force promotes anyway). It is published to the registry as a new version either way (not with --dry-run),
    so it can be promoted by hand later.
    """
    from classifiers.challenge import challenger_wins, score
    from classifiers.errors import ClassifierError, TrainingDataError
    from classifiers.examples import recent_split

    settings = settings_from_flags(**flags)
    reg = _registry(registry, settings)
    started = time.perf_counter()
    try:
        folder = read_feedback(settings)
        examples = folder.examples()
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(folder.skipped.items())) or "none"
        progress(
            f"{folder.read['triaged']} triage decisions and {folder.read['recategorise']} recategorisations: "
            f"{len(examples)} examples (one per incident, the latest decision); skipped: {skipped}"
        )
        if len(examples) < min_recent + 1:
            raise TrainingDataError(
                f"{len(examples)} ops examples; retraining needs more than --min-recent {min_recent} "
                "(some to learn from, some to compare on)"
            )
        older, newest = recent_split(examples, recent, min_recent)
        progress(f"holding out the newest {len(newest)} (from {newest[0].at.isoformat()}); learning from {len(older)}")
        challenger, policy, base_rows = _train_challenger(
            data, text_cols, label_col, encoding, delimiter, older, min_count, pipeline, seed
        )
        champion, champion_policy, champion_name = champion_model(reg, settings)
        texts, labels = [e.text for e in newest], [e.category for e in newest]
        before, after = score(champion, champion_policy, texts, labels), score(challenger, policy, texts, labels)
        wins = challenger_wins(before, after)
        result: dict[str, Any] = {
            "decisions": {kind: folder.read[kind] for kind in ("triaged", "recategorise")},
            "examples": len(examples),
            "skipped": dict(folder.skipped),
            "held_out": len(newest),
            "champion": {"version": champion_name, **before.as_dict()},
            "challenger": after.as_dict(),
            "challenger_wins": wins,
            "version": None,
            "promoted": False,
        }
        if not dry_run:
            result["version"] = _publish(reg, challenger, policy, result, base_rows, len(older))
            if wins or force:
                why = "retrain: won on the recent decisions" if wins else "retrain --force"
                reg.promote(result["version"], at=datetime.now(UTC), why=why, scores=result)
                result["promoted"] = True
    except (ClassifierError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    result["seconds"] = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_result(result, dry_run, force)


def _train_challenger(
    data: Sequence[Path],
    text_cols: Sequence[str],
    label_col: str,
    encoding: str,
    delimiter: str,
    examples: Sequence[Any],
    min_count: int,
    pipeline: str,
    seed: int,
) -> tuple[TextClassifier, TriagePolicy, int]:
    """Base rows + older ops examples, trained the way `cityloop train` trains (classifiers/citymodel.py): the
    thresholds from every row's out-of-fold answer, the model fitted on every row."""
    from classifiers.citymodel import train_city_model
    from classifiers.text import seed_corpus
    from classifiers.trainingdata import LabelledRows, concat

    if data:
        base = read_rows(data, text_cols, label_col, encoding, DELIMITER_NAMES[delimiter])
    else:
        base = LabelledRows(*seed_corpus())
        progress(f"base history: the seed corpus ({len(base)} rows)")
    ops = LabelledRows([e.text for e in examples], [e.category for e in examples])
    progress(f"training the challenger ({pipeline}) on {len(base)} base rows and {len(ops)} ops examples")
    trained = train_city_model(concat([base, ops]), pipeline=pipeline, min_count=min_count, seed=seed,
                               target_precision=TRIAGE_TARGET_PRECISION, progress=progress)  # fmt: skip
    return trained.model, trained.policy, len(base)


def _publish(reg: ModelRegistry, model: TextClassifier, policy: TriagePolicy, result: dict[str, Any], base: int,
             ops: int) -> str:  # fmt: skip
    import tempfile

    from classifiers.modelfile import save_model

    metrics = {"triage": {"target_precision": TRIAGE_TARGET_PRECISION, **policy.as_dict()}, "retrain": result}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "challenger.cityloop"
        save_model(model, path, created_at=datetime.now(UTC), metrics=metrics,
                   source=f"retrain: {base} base rows + {ops} ops examples")  # fmt: skip
        version = reg.publish(path)
    progress(f"published {version} in {reg.root}")
    return version


def _line(name: str, s: dict[str, Any]) -> str:
    right = "n/a" if s["accuracy_automatic"] is None else f"{s['accuracy_automatic']:.3f}"
    return (f"{name}: macro-F1 {s['macro_f1']:.3f}, accuracy {s['accuracy']:.3f}, {s['automatic']:.0%} automatic "
            f"(right {right}) on {s['rows']} recent decisions")  # fmt: skip


def _print_result(result: dict[str, Any], dry_run: bool, force: bool) -> None:
    click.echo(_line(f"champion {result['champion']['version']}", result["champion"]))
    click.echo(_line("challenger", result["challenger"]))
    verdict = "the challenger wins" if result["challenger_wins"] else "the champion stays (the challenger is no better)"
    if dry_run:
        click.echo(f"{verdict}; --dry-run: nothing published")
    elif result["promoted"]:
        click.echo(
            f"{verdict}; promoted {result['version']}{' (--force)' if force and not result['challenger_wins'] else ''}"
        )
    else:
        click.echo(f"{verdict}; published {result['version']}, not promoted (`cityloop model promote` to override)")


# ------------------------------------------------------------------ the registry by hand


@click.group()
def model() -> None:
    """The model registry: list versions, promote one, roll back."""


@model.command("list")
@_registry_option
def model_list(registry: Path | None) -> None:
    """Every version, the current one marked, with what its promotions said."""
    reg = _registry(registry, settings_from_flags())
    current = reg.current()
    promoted = {e["version"]: e for e in reg.history()}
    if not reg.versions():
        click.echo(f"no versions in {reg.root}")
    for version in reg.versions():
        entry = promoted.get(version)
        said = f"promoted {entry['at']}: {entry['why']}" if entry else "never promoted"
        click.echo(f"{'*' if version == current else ' '} {version}  {said}")


@model.command("promote")
@_registry_option
@click.argument("version")
def model_promote(registry: Path | None, version: str) -> None:
    """Make VERSION current; running workers switch to it at their next poll."""
    from classifiers.errors import ClassifierError

    reg = _registry(registry, settings_from_flags())
    try:
        reg.promote(version, at=datetime.now(UTC), why="promoted by hand")
    except ClassifierError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{version} is current")


@model.command("rollback")
@_registry_option
def model_rollback(registry: Path | None) -> None:
    """Make the version that was current before this one current again."""
    from classifiers.errors import ClassifierError

    reg = _registry(registry, settings_from_flags())
    try:
        version = reg.rollback(at=datetime.now(UTC))
    except ClassifierError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rolled back: {version} is current")
