"""``cityloop city backtest``: the command around streams/backtest.py and its report (streams/backtestreport.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from streams.cli_city import city, expand_paths, load_pack


@city.command("backtest")
@click.argument("pack")
@click.option("--from-311", "history", multiple=True, required=True,
              help="Historical requests: a CSV file, a directory (its *.csv) or a glob; repeatable.")  # fmt: skip
@click.option("--category-col", required=True, help="Column of the category (the pack's names or codes).")
@click.option("--agency-col", help="Column of the agency that handled it: routing agreement.")
@click.option("--district-col", help="Column of the recorded district (with --district-layer): district agreement.")
@click.option("--district-layer", help="The pack's layer the district column names.")
@click.option("--created-col", default="created date", show_default=True, help="Column of the creation time.")
@click.option("--due-col", help="Column of the due date the city's system recorded: SLA due dates and verdicts.")
@click.option("--closed-col", help="Column of the closing time (with --due-col): on-time verdicts.")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Text encoding of the exports.")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for backtest.html and backtest.json.")  # fmt: skip
def city_backtest(pack: str, history: tuple[str, ...], out: Path, encoding: str, **columns: Any) -> None:
    """Replay a city's historical requests through PACK, without a broker, and write a report.

    Routing agreement with the recorded agency and district, a map of where they disagree, workload per unit by
    hour and day, SLA due dates and on-time verdicts against the recorded ones, and how many reports would have
    merged. The evidence a city looks at before going live.
    """
    from dispatch import DispatchError
    from dispatch.history import read_rows
    from streams.backtest import Columns, run_backtest
    from streams.backtestreport import write_report

    city_pack = load_pack(pack)
    if (columns["district_col"] is None) != (columns["district_layer"] is None):
        raise click.UsageError("give --district-col and --district-layer together")
    if columns["district_layer"] and columns["district_layer"] not in city_pack.layers:
        raise click.UsageError(f"--district-layer {columns['district_layer']!r}: the pack's layers are "
                               f"{', '.join(city_pack.layers)}")  # fmt: skip
    wanted = Columns(
        category=columns["category_col"], agency=columns["agency_col"], created=columns["created_col"],
        due=columns["due_col"], closed=columns["closed_col"], district=columns["district_col"],
        district_layer=columns["district_layer"],
    )  # fmt: skip
    optional = (("--created-col", wanted.created), ("--agency-col", wanted.agency), ("--due-col", wanted.due),
                ("--closed-col", wanted.closed), ("--district-col", wanted.district))  # fmt: skip
    try:  # exports of several vintages: the category in every file; the other columns in at least one
        rows = read_rows(expand_paths(history, "--from-311"), required=[wanted.category], encoding=encoding)
        rows.require(optional)
    except DispatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"read {len(rows.rows):,} requests from {len(rows.files)} file(s)", err=True)
    result = run_backtest(city_pack, rows, wanted, progress=lambda line: click.echo(line, err=True))
    html_path, json_path = write_report(city_pack, result, out)
    summary = result.summary
    agency = summary.get("agency", {}).get("agreement")
    sla = summary.get("sla", {}).get("due_within_1h")
    click.echo(
        f"replayed {summary['replayed']:,} of {summary['requests']:,} requests; routed to the recorded agency "
        f"{'n/a' if agency is None else f'{agency:.1%}'}; due dates within 1 h {'n/a' if sla is None else f'{sla:.1%}'}"
        f"; merged {summary['merges'].get('merged', 0):,}"
    )
    click.echo(f"wrote {html_path} and {json_path}")
