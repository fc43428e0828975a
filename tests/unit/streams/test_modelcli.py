"""`cityloop train` and `cityloop eval` on small CSV files: outputs, model files, exit codes and clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from classifiers.modelfile import read_metadata
from classifiers.pipelines import CANDIDATES
from classifiers.text import seed_corpus
from streams.cli import main
from streams.modelcli import PIPELINES


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def reports_csv(tmp_path_factory) -> Path:
    """The seed corpus as a city export would have it: a text column, a second text column and the label."""
    texts, labels = seed_corpus()
    rows = [
        {"Report Text": text, "Where": "street" if i % 2 else "", "Service Category": label}
        for i, (text, label) in enumerate(zip(texts, labels, strict=True))
    ]
    rows.append({"Report Text": "", "Where": "", "Service Category": "pothole"})  # no text: skipped
    return write_csv(tmp_path_factory.mktemp("data") / "reports.csv", rows)


@pytest.fixture(scope="module")
def trained(reports_csv, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("model") / "city.cityloop"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data", str(reports_csv),
            "--text-col", "report text",
            "--text-col", "where",
            "--label-col", "service_category",
            "--out", str(out),
            "--created-at", "2026-05-01T08:00:00+0000",
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_train_writes_a_model_and_reports_held_out_metrics(trained):
    """JSON on stdout: rows, classes, held-out scores, triage thresholds; the file records the same."""
    out, summary = trained
    texts, labels = seed_corpus()
    assert summary["rows"] == len(texts) and summary["skipped"] == 1
    assert summary["classes"] == len(set(labels)) and summary["dropped_classes"] == {}
    assert 0.0 <= summary["holdout"]["accuracy"] <= 1.0 and 0.0 <= summary["holdout"]["ece"] <= 1.0
    assert 0.0 <= summary["triage"]["default_threshold"] <= 1.0
    metadata = read_metadata(out)
    assert metadata.created_at == "2026-05-01T08:00:00+00:00"
    assert metadata.metrics["holdout"] == summary["holdout"]
    assert metadata.source == "reports.csv: text report text + where, label service_category"


def test_train_prints_progress_to_stderr_and_a_summary_to_stdout(reports_csv, tmp_path):
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(reports_csv), "--text-col", "Report Text", "--label-col", "Service Category",
         "--out", str(tmp_path / "m.cityloop")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    usable = len(seed_corpus()[0])  # the fixture adds one row with no text
    assert f"read {usable + 1} rows" in result.stderr and f"{usable} usable, 1 skipped" in result.stderr
    assert "calibration fold 5/5" in result.stderr and f"refitting on all {usable} rows" in result.stderr
    assert result.stdout.startswith(f"model: {tmp_path / 'm.cityloop'}")
    assert "held out: accuracy" in result.stdout


def test_eval_prints_scores_per_class_confusions_calibration_and_speed(trained, reports_csv):
    out, _ = trained
    result = CliRunner().invoke(
        main,
        ["eval", "--model", str(out), "--data", str(reports_csv), "--text-col", "Report Text", "--text-col", "Where",
         "--label-col", "Service Category", "--top", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for expected in ("accuracy", "macro-F1", "ECE (10 bins)", "precision", "recall", "reports/s", "p50", "p99"):
        assert expected in result.stdout
    assert f"{len(seed_corpus()[0])} scored, of which 0 have a label the model does not know" in result.stdout
    assert "dispatched automatically" in result.stdout and "saved with the model" in result.stdout


def test_eval_json_scores_rows_with_unknown_labels_as_misses(trained, tmp_path):
    """A row labelled with a class the model never saw is scored (a miss, as in production) and counted."""
    out, _ = trained
    data = write_csv(
        tmp_path / "new.csv",
        [
            {"text": "huge hole in the road by the school", "label": "pothole"},
            {"text": "lamp post dark all night", "label": "streetlight"},
            {"text": "dead rat in the stairwell", "label": "rodents"},
        ],
    )
    result = CliRunner().invoke(
        main, ["eval", "--model", str(out), "--data", str(data), "--text-col", "text", "--label-col", "label", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_read"] == 3 and report["rows_unknown_label"] == 1 and report["rows"] == 3
    assert report["accuracy"] <= 2 / 3 and 0.0 <= report["ece"] <= 1.0
    rodents = next(c for c in report["per_class"] if c["label"] == "rodents")
    assert (rodents["support"], rodents["recall"], rodents["f1"]) == (1, 0.0, 0.0)
    assert {"label", "support", "precision", "recall", "f1"} <= set(report["per_class"][0])
    assert report["latency"]["batch_reports_per_s"] > 0
    assert report["latency"]["single_p99_ms"] >= report["latency"]["single_p50_ms"] > 0


def test_eval_applies_the_saved_triage_policy_and_writes_every_prediction(trained, reports_csv, tmp_path):
    """Coverage and accuracy under the model's own thresholds; --threshold 0 dispatches all; one CSV line per row."""
    out, summary = trained
    argv = ["eval", "--model", str(out), "--data", str(reports_csv), "--text-col", "Report Text",
            "--label-col", "Service Category", "--json"]  # fmt: skip
    saved = json.loads(CliRunner().invoke(main, argv + ["--predictions", str(tmp_path / "p.csv")]).stdout)
    assert saved["triage"]["policy"] == {
        k: summary["triage"][k] for k in ("default_threshold", "thresholds", "max_unknown_share")
    }
    rows = len(seed_corpus()[0])
    assert saved["triage"]["automatic"] + saved["triage"]["triaged"] == saved["rows"] == rows
    with (tmp_path / "p.csv").open(encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == rows
    assert sum(line["correct"] == "True" for line in lines) == round(saved["accuracy"] * rows)
    assert sum(line["automatic"] == "True" for line in lines) == saved["triage"]["automatic"]
    everything = json.loads(CliRunner().invoke(main, argv + ["--threshold", "0"]).stdout)["triage"]
    assert (everything["coverage"], everything["triaged"]) == (1.0, 0)
    assert everything["accuracy_automatic"] == pytest.approx(saved["accuracy"])


def test_train_and_eval_read_semicolons_and_other_encodings(trained, tmp_path):
    """A Latin-1 file says to name its encoding and then reads; a semicolon-separated file reads as it is."""
    out, _ = trained
    rows = "text;label\nnid de poule énorme rue Hôtel;pothole\nlampadaire éteint;streetlight\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(rows.encode("latin-1"))
    argv = ["eval", "--model", str(out), "--data", str(latin), "--text-col", "text", "--label-col", "label", "--json"]
    refused = CliRunner().invoke(main, argv)
    assert refused.exit_code == 1 and "--encoding" in refused.output and "Traceback" not in refused.output
    read = CliRunner().invoke(main, argv + ["--encoding", "latin-1"])
    assert read.exit_code == 0, read.output
    assert json.loads(read.stdout)["rows"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/absent.csv", "--text-col", "text", "--label-col", "label"], "no such file"),
        (["--data", "{small}", "--text-col", "body", "--label-col", "label"], "has no column 'body'"),
        (["--data", "{small}", "--text-col", "text", "--label-col", "label"], "7 usable rows"),
        (["--data", "{small}", "--text-col", "text", "--label-col", "label", "--min-count", "2"], "1 class left"),
        (["--data", "{tiny}", "--text-col", "text", "--label-col", "label", "--min-count", "2"], "at least 10"),
    ],
)
def test_train_errors_are_clear_and_exit_1(tmp_path, args, message):
    """A missing file or column, one class only, or too few rows: exit 1 with a message, no traceback."""
    small = write_csv(
        tmp_path / "small.csv",
        [{"text": f"hole {i}", "label": "pothole"} for i in range(6)] + [{"text": "noise", "label": "noise"}],
    )
    tiny = write_csv(
        tmp_path / "tiny.csv",
        [{"text": f"hole {i}", "label": "pothole"} for i in range(3)]
        + [{"text": f"loud {i}", "label": "noise"} for i in range(3)],
    )
    argv = ["train"] + [a.format(tmp=tmp_path, small=small, tiny=tiny) for a in args]
    result = CliRunner().invoke(main, argv + ["--out", str(tmp_path / "m.cityloop")])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.cityloop").exists()


def test_eval_refuses_a_file_that_is_not_a_model(tmp_path, reports_csv):
    (tmp_path / "fake.cityloop").write_text("not a model")
    result = CliRunner().invoke(
        main,
        ["eval", "--model", str(tmp_path / "fake.cityloop"), "--data", str(reports_csv), "--text-col", "Report Text",
         "--label-col", "Service Category"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "not a CityLoop model file" in result.output


def test_eval_with_no_known_label_scores_misses_and_warns(trained, tmp_path):
    """Probably the wrong label column: every row is still a miss, and stderr says what to check."""
    out, _ = trained
    data = write_csv(tmp_path / "other.csv", [{"text": "rats", "label": "rodents"}])
    result = CliRunner().invoke(
        main, ["eval", "--model", str(out), "--data", str(data), "--text-col", "text", "--label-col", "label"]
    )
    assert result.exit_code == 0, result.output
    assert "accuracy 0.000" in result.stdout
    assert "none of the 1 rows has a label the model knows; is --label-col right?" in result.stderr


def test_missing_required_options_are_usage_errors():
    result = CliRunner().invoke(main, ["train", "--data", "x.csv"])
    assert result.exit_code == 2 and "--text-col" in result.output


def test_the_cli_offers_exactly_the_candidate_pipelines():
    """The CLI's list (kept light for --help) matches the pipelines the classifier knows."""
    assert set(PIPELINES) == set(CANDIDATES)


def test_train_reads_several_files_whose_headers_are_spelt_differently(tmp_path):
    """Exports of different years ('Complaint Type', 'complaint_type') train one model together."""
    texts, labels = seed_corpus()
    half = len(texts) // 2
    old = write_csv(
        tmp_path / "2011.csv",
        [{"Descriptor": t, "Complaint Type": y} for t, y in zip(texts[:half], labels[:half], strict=True)],
    )
    new = write_csv(
        tmp_path / "2026.csv",
        [{"descriptor": t, "complaint_type": y} for t, y in zip(texts[half:], labels[half:], strict=True)],
    )
    out = tmp_path / "m.cityloop"
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(old), "--data", str(new), "--text-col", "descriptor", "--label-col", "complaint type",
         "--out", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == len(texts)
    assert result.stderr.count("usable") == 2
    assert read_metadata(out).source == "2011.csv, 2026.csv: text descriptor, label complaint type"


def test_the_suggested_triage_thresholds_load_as_a_policy(trained):
    """A city can build its triage policy straight from the thresholds `train` chose and saved."""
    from classifiers.triage import TriagePolicy

    out, summary = trained
    policy = TriagePolicy.from_dict(read_metadata(out).metrics["triage"])
    assert policy.default_threshold == summary["triage"]["default_threshold"]


def test_the_cli_does_not_import_scikit_learn_until_a_model_command_runs():
    """`cityloop --help` and the other commands start without paying for scikit-learn and skops."""
    import subprocess
    import sys

    check = "import sys, streams.cli; print(sorted(m for m in ('sklearn', 'skops') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_train_names_the_classes_that_always_wait_for_a_person():
    """A class whose threshold is 1.0 never dispatches automatically; `train` says so rather than hiding it."""
    from streams.modelcli import _policy_lines

    lines = _policy_lines({"default_threshold": 0.3, "thresholds": {"graffiti": 0.42, "noise": 1.0}}, 0.9)
    assert "below confidence 0.300 by default" in lines and "graffiti: below 0.420" in lines
    assert "always to a person (never reached the target precision): noise" in lines
    assert "noise: below" not in lines
    hopeless = _policy_lines({"default_threshold": 1.0, "thresholds": {}}, 0.9)
    assert "every other class always goes to a person" in hopeless
