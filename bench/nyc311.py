"""The NYC 311 extracts in ../shared/data as labelled rows, split by time (shared by benchmarks and tests).

Real public data for measurement only: the product never reads it. Older extracts
(2011..2024) train, the two 2026 extracts test.
"""

from __future__ import annotations

from pathlib import Path

from classifiers.trainingdata import LabelledRows, concat, read_labelled_csv

NYC_311 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyc" / "311"
TEXT_COLUMNS = ("descriptor", "location type")


def extracts(directory: Path = NYC_311) -> tuple[list[Path], list[Path]]:
    """(training files 2011..2024, test files 2026), by the year in the file name."""
    files = sorted(directory.glob("nyc311_*.csv"))
    train = [f for f in files if int(f.name[7:11]) <= 2024]
    test = [f for f in files if int(f.name[7:11]) >= 2026]
    return train, test


def time_split(label_column: str, directory: Path = NYC_311) -> tuple[LabelledRows, LabelledRows]:
    """Descriptor (+ location type) -> ``label_column`` for the older and the newest extracts."""
    train_files, test_files = extracts(directory)
    train = concat(read_labelled_csv(f, TEXT_COLUMNS, label_column) for f in train_files)
    test = concat(read_labelled_csv(f, TEXT_COLUMNS, label_column) for f in test_files)
    return train, test
