"""Resolve targets learnt from a city's recorded due dates (`city init --due-col`), checked against due dates written
out by hand, not computed with the clocks under test."""

from __future__ import annotations

import csv
from datetime import time
from zoneinfo import ZoneInfo

import yaml
from click.testing import CliRunner

from feedback import BusinessCalendar
from streams import slalearn
from streams.cli import main
from tests.unit.dispatch.packs import TWIN_DISTRICTS, write_layer

NY = ZoneInfo("America/New_York")
CALENDAR = BusinessCalendar(zone=NY, start=time(8, 0), end=time(18, 0))

# noise: 8 elapsed hours; permits: 2 working days (Mon-Fri 08:00-18:00), so weekends are skipped
ROWS = [
    ("Noise", "06/02/2026 10:00:00 PM", "06/03/2026 06:00:00 AM"),
    ("Noise", "2026-06-05T13:30:00.000", "2026-06-05T21:30:00.000"),
    ("Noise", "06/06/2026 01:15:00 AM", "06/06/2026 09:15:00 AM"),
    ("Permit", "2026-06-01T09:00:00", "2026-06-03T09:00:00"),  # Mon -> Wed
    ("Permit", "2026-06-04T15:00:00", "2026-06-08T15:00:00"),  # Thu -> Mon, over the weekend
    ("Permit", "2026-06-05T17:30:00", "2026-06-09T17:30:00"),  # Fri -> Tue
    ("Permit", "2026-06-06T11:00:00", "2026-06-09T18:00:00"),  # Sat: counting starts Mon 08:00 -> Tue 18:00
    ("Permit", "", "2026-06-09T18:00:00"),  # no creation time: unreadable
    ("Noise", "2026-06-05T13:30:00", ""),  # no due date: report-only, skipped
]


def test_each_category_gets_the_clock_and_budget_that_reproduce_its_due_dates():
    learning = slalearn.learn_slas(*zip(*ROWS, strict=True), CALENDAR)
    noise, permit = learning.learnt["noise"], learning.learnt["permit"]
    assert (noise.span, noise.clock, noise.rows, noise.reproduced) == ("8h", "calendar", 3, 3)
    assert (permit.span, permit.clock, permit.rows, permit.reproduced) == ("2d", "working", 4, 4)
    assert (learning.rows, learning.reproduced, learning.unreadable) == (7, 7, 1)
    assert "reproduces 100.0% of 7 recorded due dates" in learning.line()


def test_a_due_date_an_hour_off_is_not_reproduced():
    """The measure is strict: a deadline an hour from the recorded one (a DST slip) counts as a miss."""
    rows = [("Noise", "2026-06-05T13:30:00", "2026-06-05T21:30:00")] * 3 + [
        ("Noise", "2026-06-06T13:30:00", "2026-06-06T22:30:00")
    ]
    learning = slalearn.learn_slas(*zip(*rows, strict=True), CALENDAR)
    assert (learning.learnt["noise"].span, learning.reproduced, learning.rows) == ("8h", 3, 4)


def test_parse_local_reads_the_spellings_of_311_exports_in_the_citys_zone():
    assert slalearn.parse_local("03/01/2011 02:27:57 PM", NY).isoformat() == "2011-03-01T14:27:57-05:00"
    assert slalearn.parse_local("2024-04-16T03:03:15.000", NY).isoformat() == "2024-04-16T03:03:15-04:00"
    assert slalearn.parse_local("2024-04-16T07:03:15Z", NY).isoformat() == "2024-04-16T07:03:15+00:00"
    assert slalearn.parse_local("soon", NY) is None and slalearn.parse_local(" ", NY) is None


def init_args(tmp_path, agency_of, *extra: str) -> list[str]:
    """`city init` on Twin town from an export of ROWS (agency per category by ``agency_of``), learning SLAs."""
    layer = tmp_path / "d.geojson"
    write_layer(layer, TWIN_DISTRICTS, id_property="code")
    export = tmp_path / "311.csv"
    with export.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Complaint Type", "Agency", "Created Date", "Due Date"])
        writer.writerows((kind, agency_of(kind), start, end) for kind, start, end in ROWS)
    return ["city", "init", str(tmp_path / "pack"), "--layer", f"d={layer}", "--timezone", "America/New_York",
            "--from-311", str(export), "--category-col", "Complaint Type", "--agency-col", "Agency",
            "--due-col", "Due Date", *extra]  # fmt: skip


def test_city_init_writes_the_learnt_targets_and_reports_the_share(tmp_path):
    layer = tmp_path / "d.geojson"
    args = init_args(tmp_path, lambda kind: "DOT" if kind == "Permit" else "NYPD")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "SLA learnt from due dates for 2 categories (1 calendar, 1 working clock)" in result.output
    assert "reproduces 100.0% of 7 recorded due dates to within 1 h (1 unreadable" in result.output
    text = (tmp_path / "pack" / "city.yaml").read_text()
    assert text.startswith("# ")  # the header comment survives the rewrite
    slas = {c["code"]: c["sla"] for c in yaml.safe_load(text)["categories"]}
    assert slas["noise"] == {"acknowledge": "8h", "resolve": "8h", "clock": "calendar"}  # ack not above resolve
    assert slas["permit"] == {"acknowledge": "1d", "resolve": "2d", "clock": "working"}
    assert slas["other"] == {"acknowledge": "1d", "resolve": "10d", "clock": "working"}  # nothing learnt: default
    refused = CliRunner().invoke(main, ["city", "init", str(tmp_path / "p2"), "--layer", f"d={layer}", "--mapping",
                                        str(tmp_path / "311.csv"), "--due-col", "Due Date"])  # fmt: skip
    assert refused.exit_code == 2 and "--due-col reads --from-311 files" in refused.output
    # a mistyped column: one line, and nothing written (the same command, corrected, then runs in the same place)
    elsewhere = [*args[:2], str(tmp_path / "p3"), *args[3:-2]]
    typo = CliRunner().invoke(main, [*elsewhere, "--due-col", "Due", "--created-col", "Opened"])
    assert typo.exit_code == 1 and "--due-col 'Due': no file of --from-311 has that column" in typo.output
    typo = CliRunner().invoke(main, [*elsewhere, "--due-col", "Due Date", "--created-col", "Opened"])
    assert typo.exit_code == 1 and "--created-col 'Opened': no file of --from-311 has that column" in typo.output
    assert not (tmp_path / "p3").exists()
    assert CliRunner().invoke(main, [*elsewhere, "--due-col", "Due Date"]).exit_code == 0


def test_the_citys_closing_time_convention_is_learnt_with_the_targets(tmp_path):
    """One working day from before opening: the city's due dates are the next morning's opening (Wednesday 08:00),
    not Tuesday's closing; init learns that and writes calendar.at_close: next_opening."""
    layer = tmp_path / "d.geojson"
    write_layer(layer, TWIN_DISTRICTS, id_property="code")
    export = tmp_path / "311.csv"
    export.write_text(
        "Complaint Type,Agency,Created Date,Due Date\n"
        "Permit,DOB,2026-06-02T07:07:00,2026-06-03T08:00:00\n"  # Tue before opening -> Wed opening
        "Permit,DOB,2026-06-04T06:30:00,2026-06-05T08:00:00\n"  # Thu -> Fri
        "Permit,DOB,2026-06-05T05:00:00,2026-06-08T08:00:00\n"  # Fri -> Mon, over the weekend
    )
    args = ["city", "init", str(tmp_path / "pack"), "--layer", f"d={layer}", "--timezone", "America/New_York",
            "--from-311", str(export), "--category-col", "Complaint Type", "--agency-col", "Agency",
            "--due-col", "Due Date"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "reproduces 100.0% of 3" in result.output and "move to the next opening" in result.output
    document = yaml.safe_load((tmp_path / "pack" / "city.yaml").read_text())
    assert document["calendar"]["at_close"] == "next_opening"
    assert {c["code"]: c["sla"]["resolve"] for c in document["categories"]}["permit"] == "1d"


def test_the_share_is_measured_on_the_written_pack_not_on_categories_it_left_out(tmp_path):
    """--min-rows 5 leaves Noise (4 requests) out of the pack: its 3 due dates are not counted as reproduced."""
    args = init_args(tmp_path, lambda kind: "DOT", "--min-rows", "5")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "for 1 categories (0 calendar, 1 working clock): the pack reproduces 100.0% of 4 recorded" in result.output
    assert "(3 more of categories not in the pack)" in result.output


def test_hour_budgets_of_a_working_day_that_is_not_whole_hours_are_tried():
    """On an 08:30-17:00 day (8.5 h) a 16 h working budget is not two whole days (17 h) and must be a candidate."""
    short = BusinessCalendar(zone=NY, start=time(8, 30), end=time(17, 0))
    rows = [("Permit", "2026-06-01T09:00:00", "2026-06-02T16:30:00"),  # Mon 09:00 + 8 h + 8 h -> Tue 16:30
            ("Permit", "2026-06-03T12:00:00", "2026-06-05T11:00:00"),  # Wed 5 h, Thu 8.5 h, Fri 2.5 h -> Fri 11:00
            ("Permit", "2026-06-05T16:00:00", "2026-06-09T15:00:00")]  # Fri 1 h, Mon 8.5 h, Tue 6.5 h  # fmt: skip
    learnt = slalearn.learn_slas(*zip(*rows, strict=True), short).learnt["permit"]
    assert (learnt.span, learnt.clock, learnt.reproduced) == ("16h", "working", 3)
