"""Labelled rows from CSV exports: header spellings, joined text columns, skipped rows, rare classes."""

from __future__ import annotations

import pytest

from classifiers.errors import TrainingDataError
from classifiers.trainingdata import LabelledRows, drop_rare_classes, fold_column_name, read_labelled_csv


def test_header_spellings_of_one_column_fold_together():
    assert (
        fold_column_name("Complaint Type")
        == fold_column_name("complaint_type")
        == fold_column_name("\ufeffCOMPLAINT-TYPE")
    )


def test_reads_joined_text_columns_and_skips_rows_without_text_or_label(tmp_path):
    """Empty parts are not joined; a row with no text at all or no label is skipped and counted."""
    path = tmp_path / "export.csv"
    path.write_text(
        "Unique Key,Descriptor,Location Type,Complaint Type\n"
        "1,Loud Music/Party,Residential Building,Noise - Residential\n"
        "2,Pothole,,Street Condition\n"
        "3,,,Street Condition\n"
        "4,Graffiti,Street,\n",
        encoding="utf-8",
    )
    rows = read_labelled_csv(path, ["descriptor", "location_type"], "complaint type")
    assert rows.texts == ["Loud Music/Party | Residential Building", "Pothole"]
    assert rows.labels == ["Noise - Residential", "Street Condition"]
    assert rows.skipped == 2


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("text,category\nhole,pothole\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"no column 'label'.*text, category"):
        read_labelled_csv(path, ["text"], "label")


def test_a_missing_file_is_a_training_data_error(tmp_path):
    with pytest.raises(TrainingDataError, match="no such file"):
        read_labelled_csv(tmp_path / "absent.csv", ["text"], "category")


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,category\nba\xf1o roto,x\n".encode("latin-1"))
    with pytest.raises(TrainingDataError, match="UTF-8"):
        read_labelled_csv(path, ["text"], "category")


def test_drop_rare_classes_reports_what_it_left_out():
    rows = LabelledRows(["a", "b", "c", "d"], ["x", "x", "y", "z"])
    kept, dropped = drop_rare_classes(rows, 2)
    assert kept.labels == ["x", "x"] and dropped == {"y": 1, "z": 1}


def test_an_empty_csv_is_called_empty_not_a_file_with_no_columns(tmp_path):
    """It used to say "has no column 'text'; it has: " with nothing after the colon."""
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"empty\.csv is empty: no header row, so no column 'text'$"):
        read_labelled_csv(path, ["text"], "category")


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_delimiter_is_read_from_the_header(tmp_path, sep):
    """Excel writes ';' in many locales; the header line says which separator a file uses."""
    path = tmp_path / "export.csv"
    path.write_text(f"text{sep}label\nhole, deep{sep}pothole\nno light{sep}streetlight\n", encoding="utf-8")
    if sep == ",":
        path.write_text('text,label\n"hole, deep",pothole\nno light,streetlight\n', encoding="utf-8")
    rows = read_labelled_csv(path, ["text"], "label")
    assert rows.texts == ["hole, deep", "no light"] and rows.labels == ["pothole", "streetlight"]


def test_an_unknown_encoding_is_named(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("text,label\nx,y\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="unknown encoding 'klingon'"):
        read_labelled_csv(path, ["text"], "label", encoding="klingon")
