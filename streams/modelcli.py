"""``cityloop train`` and ``cityloop eval``: fit a city's text model on its historical reports, and score it.

Progress goes to stderr and results to stdout, so ``--json`` output can be piped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

# Deliberately light at import time: `cityloop --help` should not wait for scikit-learn, so
# everything from `classifiers` (whose package imports it) is imported inside the commands.
if TYPE_CHECKING:
    from classifiers.evaluation import Evaluation
    from classifiers.text import TextClassifier
    from classifiers.trainingdata import LabelledRows

# Kept in step with classifiers.pipelines (a test checks), so that --help needs no scikit-learn import.
PIPELINES = (
    "words+chars2-5/linearsvc",
    "chars2-5/logreg-sqrtw",
    "chars2-5/logreg",
    "chars2-5/logreg-unweighted",
    "char_wb2-5/logreg",
    "char_wb1-4/logreg",
    "words+char_wb1-4/logreg",
    "char_wb1-4/linearsvc",
    "words+char_wb1-4/linearsvc",
    "words+char_wb1-4/sgd",
    "words+char_wb1-4/complementnb",
)

TRIAGE_TARGET_PRECISION = 0.9


def progress(message: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True)


def read_rows(
    data: Sequence[Path], text_cols: Sequence[str], label_col: str, encoding: str, delimiter: str | None
) -> LabelledRows:
    from classifiers.trainingdata import concat, read_labelled_csv

    parts = []
    for path in data:
        rows = read_labelled_csv(path, text_cols, label_col, encoding=encoding, delimiter=delimiter)
        progress(
            f"read {len(rows) + rows.skipped} rows from {path}: {len(rows)} usable, "
            f"{rows.skipped} skipped (empty text or label)"
        )
        parts.append(rows)
    return concat(parts)


def _scores(model: TextClassifier, texts: Sequence[str], labels: Sequence[str], most_confused: int = 10) -> Evaluation:
    from classifiers.evaluation import evaluate

    answers = model.predict(texts, top_k=1)
    return evaluate(labels, [a.category for a in answers], [a.confidence for a in answers], most_confused=most_confused)


def _summary_line(scores: Evaluation) -> str:
    return f"accuracy {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f}, ECE {scores.ece:.3f} on {scores.rows} rows"


DELIMITER_NAMES = {"auto": None, "comma": ",", "semicolon": ";", "tab": "\t", "bar": "|"}


def data_options(*, required: bool = True, base_help: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--data``, ``--text-col``, ``--encoding`` and ``--delimiter``, the same for train, eval and retrain.

    ``required=False`` (retrain) makes ``--data`` optional and ``--text-col`` default to ``text``.
    """

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--delimiter",
            default="auto",
            show_default=True,
            type=click.Choice(list(DELIMITER_NAMES)),
            help="Field separator; auto reads it from the header line (Excel writes ';' in many locales).",
        )(command)
        command = click.option(
            "--encoding",
            default="utf-8-sig",
            show_default=True,
            help="Text encoding of the files, e.g. latin-1, cp1251, gbk (a UTF-8 byte-order mark is skipped).",
        )(command)
        command = click.option(
            "--text-col",
            "text_cols",
            required=required,
            multiple=True,
            default=None if required else ("text",),
            show_default=not required,
            help="Text column; repeat to join several columns.",
        )(command)
        return click.option(
            "--data",
            required=required,
            multiple=True,
            type=click.Path(path_type=Path),
            help=base_help or "CSV file of labelled reports; repeat for several (headers may be spelt differently).",
        )(command)

    return add


@click.command()
@data_options()
@click.option("--label-col", required=True, help="Column with the category (or agency) to learn.")
@click.option(
    "--out", default="text-model.cityloop", show_default=True, type=click.Path(path_type=Path), help="Model file."
)
@click.option(
    "--min-count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Leave out classes with fewer rows than this; 1 learns every class (one with a single row is never held out).",
)
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0.05, 0.5), help="Share held out.")
@click.option("--pipeline", default=PIPELINES[0], show_default=True, type=click.Choice(PIPELINES))
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and calibration folds.")
@click.option("--created-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]), help="Creation time to record [now].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(
    data: tuple[Path, ...],
    text_cols: tuple[str, ...],
    encoding: str,
    delimiter: str,
    label_col: str,
    out: Path,
    min_count: int,
    holdout: float,
    pipeline: str,
    seed: int,
    created_at: datetime | None,
    as_json: bool,
) -> None:
    """Train a text model on a city's historical reports and write it to OUT.

    Holds out a stratified share of the rows to measure the model, then refits on every
    row for the saved model and chooses its triage thresholds on its cross-validated
    (out-of-fold) answers for every row.
    """
    from classifiers.citymodel import train_city_model
    from classifiers.errors import ClassifierError
    from classifiers.modelfile import save_model

    started = time.perf_counter()
    try:
        read = read_rows(data, text_cols, label_col, encoding, DELIMITER_NAMES[delimiter])
        city = train_city_model(
            read,
            pipeline=pipeline,
            min_count=min_count,
            holdout=holdout,
            seed=seed,
            target_precision=TRIAGE_TARGET_PRECISION,
            progress=progress,
        )
        model, policy, scores, dropped, classes, rows = (
            city.model,
            city.policy,
            city.holdout,
            city.dropped,
            city.classes,
            city.rows,
        )
        progress(f"held out: {_summary_line(scores)}")
        metrics = {
            "holdout": {
                "rows": scores.rows,
                "accuracy": scores.accuracy,
                "macro_f1": scores.macro_f1,
                "ece": scores.ece,
            },
            "triage": {"target_precision": TRIAGE_TARGET_PRECISION, "chosen_on": "out-of-fold", **policy.as_dict()},
        }
        metadata = save_model(
            model,
            out,
            created_at=created_at or datetime.now(UTC),
            metrics=metrics,
            source=f"{', '.join(p.name for p in data)}: text {' + '.join(text_cols)}, label {label_col}",
        )
    except (ClassifierError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - started
    progress(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB) in {elapsed:.1f} s")
    result = {
        "model": str(out),
        "rows": len(rows),
        "skipped": rows.skipped,
        "classes": len(classes),
        "dropped_classes": dropped,
        "temperature": metadata.temperature,
        "seconds": elapsed,
        **metrics,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"model: {out}")
    click.echo(f"classes: {len(classes)} ({len(dropped)} left out), rows: {len(rows)}")
    click.echo(f"held out: {_summary_line(scores)}")
    click.echo(_policy_lines(policy.as_dict(), TRIAGE_TARGET_PRECISION))


def _policy_lines(policy: dict[str, Any], target: float) -> str:
    """The triage thresholds a model will use, saying plainly which classes always wait for a person."""
    lines = [f"triage (target precision {target}): below confidence {policy['default_threshold']:.3f} by default"]
    always = sorted(c for c, t in policy["thresholds"].items() if t >= 1.0)
    for category, threshold in sorted(policy["thresholds"].items()):
        if threshold < 1.0:
            lines.append(f"  {category}: below {threshold:.3f}")
    if always:
        lines.append(f"  always to a person (never reached the target precision): {', '.join(always)}")
    if policy["default_threshold"] >= 1.0:
        lines.append("  every other class always goes to a person: the model never reached the target overall")
    unknown = policy.get("max_unknown_share", 1.0)
    if unknown < 1.0:
        lines.append(f"  and any report with {unknown:.0%} or more of its words unknown to the model")
    return "\n".join(lines)


@click.command("eval")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="Model file.")
@data_options()
@click.option("--label-col", required=True, help="Column with the true category.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Classes and pairs to list.")
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every row's prediction to this CSV (text, true, predicted, confidence, correct, automatic).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    help="Triage threshold for a model without saved thresholds [the model's own; else 0.25, the worker's default].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def eval_(
    model_path: Path,
    data: tuple[Path, ...],
    text_cols: tuple[str, ...],
    encoding: str,
    delimiter: str,
    label_col: str,
    top: int,
    predictions: Path | None,
    threshold: float | None,
    as_json: bool,
) -> None:
    """Score a model on labelled reports: accuracy, macro-F1, per class, calibration, triage and speed.

    Every row is scored: a row whose label the model was never trained on is a miss, as it
    would be in production (those rows are also counted). Macro-F1 averages over every class
    that is a true label or a prediction, as scikit-learn does. The triage lines apply the
    thresholds saved with the model: the share of reports dispatched without a person
    (coverage) and how often those were right.
    """
    from classifiers.errors import ClassifierError, TrainingDataError
    from classifiers.evaluation import evaluate, measure_latency, score_triage
    from classifiers.modelfile import load_model
    from classifiers.triage import TriagePolicy

    try:
        model, metadata = load_model(model_path)
        rows = read_rows(data, text_cols, label_col, encoding, DELIMITER_NAMES[delimiter])
        if not len(rows):
            raise TrainingDataError(f"no usable rows in {', '.join(map(str, data))}")
        saved = metadata.metrics.get("triage")
        if saved and threshold is None:
            policy, policy_source = TriagePolicy.from_dict(saved), "saved with the model"
        else:
            policy = TriagePolicy(0.25 if threshold is None else threshold)
            policy_source = "--threshold" if threshold is not None else "none saved: the worker's default 0.25"
        known = set(model.classes)
        unknown = sum(label not in known for label in rows.labels)
        if unknown == len(rows):
            progress(f"warning: none of the {len(rows)} rows has a label the model knows; is --label-col right?")
        progress(f"classifying {len(rows)} rows")
        answers = model.predict(rows.texts, top_k=1)
        predicted = [a.category for a in answers]
        confidences = [a.confidence for a in answers]
        scores = evaluate(rows.labels, predicted, confidences, most_confused=top)
        automatic = [not policy.needs_triage(a) for a in answers]
        triage = score_triage(rows.labels, predicted, automatic)
        if predictions is not None:
            _write_predictions(predictions, rows, answers, automatic)
        progress("timing")
        latency = measure_latency(lambda batch: model.predict(batch), rows.texts, time.perf_counter)
    except (ClassifierError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    result: dict[str, Any] = {
        "model": str(model_path),
        "created_at": metadata.created_at,
        "rows_read": len(rows) + rows.skipped,
        "rows_skipped": rows.skipped,
        "rows_unknown_label": unknown,
        **scores.as_dict(),  # its "rows" are every usable row
        "triage": {"policy": policy.as_dict(), "source": policy_source, **triage.__dict__},
        "latency": latency.__dict__,
    }
    result["confused"] = [{"true": t, "predicted": p, "rows": n} for t, p, n in scores.confused[:top]]
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_eval(model_path, model, metadata.created_at, rows, unknown, scores, triage, policy_source, latency, top)


def _write_predictions(path: Path, rows: LabelledRows, answers: Sequence[Any], automatic: Sequence[bool]) -> None:
    """One line per row, in input order, for a spreadsheet or a second opinion."""
    import csv

    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "true", "predicted", "confidence", "correct", "automatic"])
        for text, label, answer, auto in zip(rows.texts, rows.labels, answers, automatic, strict=True):
            writer.writerow([text, label, answer.category, f"{answer.confidence:.4f}", label == answer.category, auto])
    progress(f"wrote {len(rows)} predictions to {path}")


def _print_eval(
    model_path: Path,
    model: TextClassifier,
    created_at: str,
    rows: LabelledRows,
    unknown: int,
    scores: Evaluation,
    triage: Any,
    policy_source: str,
    latency: Any,
    top: int,
) -> None:
    click.echo(f"model {model_path} ({len(model.classes)} classes, made {created_at})")
    click.echo(
        f"rows: {scores.rows} scored, of which {unknown} have a label the model does not know (misses); "
        f"{rows.skipped} skipped (empty text or label)"
    )
    click.echo(f"accuracy {scores.accuracy:.3f}  macro-F1 {scores.macro_f1:.3f}  ECE (10 bins) {scores.ece:.3f}")
    right = "n/a" if triage.accuracy_automatic is None else f"{triage.accuracy_automatic:.3f}"
    click.echo(
        f"triage ({policy_source}): {triage.coverage:.1%} dispatched automatically ({triage.automatic} rows, "
        f"accuracy {right}), {triage.triaged} to a person"
    )
    click.echo(f"\n{'class':32} {'rows':>6} {'precision':>9} {'recall':>7} {'F1':>6}")
    for s in scores.per_class[:top]:
        click.echo(f"{s.label[:32]:32} {s.support:6d} {s.precision:9.3f} {s.recall:7.3f} {s.f1:6.3f}")
    if len(scores.per_class) > top:
        click.echo(f"... {len(scores.per_class) - top} more classes (--top, or --json for all)")
    if scores.confused:
        click.echo("\nmost confused (true -> predicted: rows)")
        for t, p, n in scores.confused[:top]:
            click.echo(f"  {t} -> {p}: {n}")
    click.echo(
        f"\nspeed: {latency.batch_reports_per_s:,.0f} reports/s in batches of {latency.batch_size}; "
        f"one text p50 {latency.single_p50_ms:.2f} ms, p99 {latency.single_p99_ms:.2f} ms"
    )
