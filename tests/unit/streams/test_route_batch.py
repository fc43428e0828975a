"""`cityloop route PACK --csv IN --out OUT`: every row out, in order, routed as `Dispatcher.assign` routes it alone."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from dispatch import Dispatcher
from dispatch.onboard import LayerSource, init_city_pack
from streams.cli import main
from tests.unit.dispatch.packs import TWIN_DISTRICTS, write_layer


def twin(tmp_path):
    layer = tmp_path / "d.geojson"
    write_layer(layer, TWIN_DISTRICTS, id_property="code")
    mapping = tmp_path / "m.csv"
    mapping.write_text("category,unit\nPothole,Roads\nStreet Light Out,Lighting\n")
    return init_city_pack(tmp_path / "pack", [LayerSource("d", layer)], name="Twin", mapping_csv=mapping).pack


ROWS = [
    ("1", "Pothole", "52.005", "4.995"),
    ("2", "street  light OUT", "52.005", "5.005"),  # a name, spelt otherwise
    ("3", "street-light-out", "52.006", "4.996"),  # the code
    ("4", "Graffiti", "52.005", "4.995"),  # not in the pack
    ("5", "Pothole", "", ""),  # not geolocated
    ("6", "Pothole", "152.0", "4.99"),
    ("7", "Pothole", "40.0", "-74.0"),  # outside every area: the fallback unit, as in production
]


def write_rows(path, rows=ROWS):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "Complaint", "Latitude", "Longitude"])
        writer.writerows(rows)


def run(pack, tmp_path, *extra):
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    if not source.exists():
        write_rows(source)
    args = ["route", str(pack.path), "--csv", str(source), "--out", str(out), "--category-col", "Complaint",
            "--lat-col", "Latitude", "--lon-col", "Longitude", *extra]  # fmt: skip
    return CliRunner().invoke(main, args), out


def test_every_row_is_written_in_order_routed_as_alone_or_with_the_reason_it_was_not(tmp_path):
    pack = twin(tmp_path)
    result, out = run(pack, tmp_path)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [r[0] for r in ROWS]
    dispatcher = Dispatcher(pack)
    alone = {
        "1": dispatcher.assign("pothole", 52.005, 4.995).unit_id,
        "2": dispatcher.assign("street-light-out", 52.005, 5.005).unit_id,
        "3": dispatcher.assign("street-light-out", 52.006, 4.996).unit_id,
        "7": dispatcher.assign("pothole", 40.0, -74.0).unit_id,
    }
    assert {r["id"]: r["unit"] for r in rows if r["unit"]} == alone
    assert alone == {"1": "roads", "2": "lighting", "3": "lighting", "7": "ops-centre"}
    problems = {r["id"]: r["problem"] for r in rows if r["problem"]}
    assert problems == {"4": "unknown category 'Graffiti'", "5": "no coordinates", "6": "coordinates out of range"}
    assert all(r["rule"] for r in rows if r["unit"])
    assert "routed 4 of 7 rows" in result.stderr and "1 unknown category" in result.stderr


def test_explain_adds_each_decisions_explanation(tmp_path):
    result, out = run(twin(tmp_path), tmp_path, "--explain")
    assert result.exit_code == 0, result.output
    first = next(csv.DictReader(out.open()))
    assert json.loads(first["explanation"])["features"], first


def test_bad_input_is_one_clear_line_and_no_partial_output(tmp_path):
    pack = twin(tmp_path)
    missing, out = run(pack, tmp_path, "--category-col", "Type")
    assert missing.exit_code == 1 and "no column 'Type'" in missing.output and "Traceback" not in missing.output
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    (tmp_path / "in.csv").write_bytes("id,Complaint,Latitude,Longitude\n1,Façade,52.0,4.99\n".encode("cp1252"))
    undecodable, _ = run(pack, tmp_path)
    assert undecodable.exit_code == 1 and "in.csv: not UTF-8 text (a byte 0xe7); give its encoding with --encoding" in (
        undecodable.output
    ), undecodable.output
    assert run(pack, tmp_path, "--encoding", "cp1252")[0].exit_code == 0
    alone = CliRunner().invoke(main, ["route", str(pack.path), "--csv", str(tmp_path / "in.csv")])
    assert alone.exit_code == 2 and "--csv and --out go together" in alone.output
    neither = CliRunner().invoke(main, ["route", str(pack.path), "--lat", "52.0"])
    assert neither.exit_code == 2 and "--lat, --lon and --category" in neither.output


def test_a_citys_own_other_a_ragged_row_and_any_header_spelling(tmp_path):
    """The city's "Other" (other-parks) is not the catch-all; a row with a trailing extra field is still routed;
    the columns are found whatever their spelling; an input column the output would overwrite is refused."""
    layer = tmp_path / "d.geojson"
    write_layer(layer, TWIN_DISTRICTS, id_property="code")
    mapping = tmp_path / "m.csv"
    mapping.write_text("category,unit\nPothole,Roads\nOther,Parks\n")
    pack = init_city_pack(tmp_path / "pack", [LayerSource("d", layer)], name="T", mapping_csv=mapping).pack
    source = tmp_path / "in.csv"
    source.write_text("id,COMPLAINT,latitude,Longitude\n1,Other,52.005,4.995\n2,Pothole,52.005,4.995,extra\n")
    out = tmp_path / "out.csv"
    args = ["route", str(pack.path), "--csv", str(source), "--out", str(out), "--category-col", "complaint"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["unit"]) for r in csv.DictReader(out.open())] == [("1", "parks"), ("2", "roads")]
    source.write_text("id,complaint,latitude,longitude,unit\n1,Other,52.005,4.995,U7\n")
    clash = CliRunner().invoke(main, args)
    assert clash.exit_code == 1 and "already has column(s) unit" in clash.output
