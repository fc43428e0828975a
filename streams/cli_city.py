"""``cityloop route`` and ``cityloop city ...``: city packs from the command line.

These commands read files only (no broker, no Redis), so they are the quickest
way to check a pack: which unit gets an incident and why, what lint finds, and
how to build a first pack from a city's open data.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from streams.console import LATITUDE, LONGITUDE, PROBABILITY, check_latlon, settings_from_flags


def load_pack(pack: str | None) -> Any:
    """A pack directory, or 'demo' (generated into the data dir); default: the settings' city."""
    from dispatch import InvalidCityPack, load_city_pack
    from dispatch.demo_city import write_demo_city

    settings = settings_from_flags(city=pack)
    path = settings.city
    if path == "demo":
        path = str(write_demo_city(settings.data_dir / "cities" / "demo"))
    try:
        return load_city_pack(path)
    except InvalidCityPack as exc:
        raise click.ClickException(
            f"invalid city pack: {exc} (docs/CITYPACK.md describes packs; `cityloop city demo --out DIR` writes one)"
        ) from None


def _when(at: str | None) -> datetime:
    try:
        now = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        raise click.UsageError(f"--at {at!r} is not an ISO 8601 time") from None
    if now.tzinfo is None:
        raise click.UsageError("--at needs a UTC offset, e.g. 2026-11-26T22:30:00+01:00")
    return now


def _route_file(pack: str | None, csv_in: Path | None, csv_out: Path | None, category_col: str, lat_col: str,
                lon_col: str, at: str | None, explain: bool, encoding: str) -> None:  # fmt: skip
    from streams import routebatch

    if csv_in is None or csv_out is None:
        raise click.UsageError("--csv and --out go together: cityloop route PACK --csv IN.csv --out OUT.csv")
    city = load_pack(pack)
    try:
        totals = routebatch.run(city, csv_in, csv_out, encoding, category_col=category_col, lat_col=lat_col,
                                lon_col=lon_col, at=_when(at), explain=explain)  # fmt: skip
    except (ValueError, LookupError) as exc:
        raise click.ClickException(f"{csv_in}: {exc}" if str(csv_in) not in str(exc) else str(exc)) from None
    click.echo(totals.line(), err=True)
    click.echo(f"wrote {csv_out}")


def _known_unit(city: Any, unit: str, option: str) -> None:
    if city.unit(unit) is None:
        known = ", ".join(u.id for u in city.spec.units)
        raise click.UsageError(f"{option}: unknown unit {unit!r}; {city.name} has: {known}")


def _pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    result = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise click.UsageError(f"{option} {value!r}: expected UNIT=VALUE")
        result.append((key, rest))
    return result


@click.command()
@click.argument("pack", required=False)
@click.option("--city", "city_flag", hidden=True, help="Same as PACK (older spelling).")
@click.option("--lat", type=LATITUDE, help="Latitude, WGS 84 decimal degrees.")
@click.option("--lon", type=LONGITUDE, help="Longitude, WGS 84 decimal degrees.")
@click.option("--category", help="Category code of the incident.")
@click.option(
    "--csv",
    "csv_in",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Route every row of this CSV instead (needs --out); categories as codes or names.",
)
@click.option("--out", "csv_out", type=click.Path(path_type=Path, dir_okay=False), help="With --csv: the routed CSV.")
@click.option("--category-col", default="category", show_default=True, help="With --csv: the category column.")
@click.option("--lat-col", default="latitude", show_default=True, help="With --csv: the latitude column.")
@click.option("--lon-col", default="longitude", show_default=True, help="With --csv: the longitude column.")
@click.option("--explain", is_flag=True, help="With --csv: add each decision's explanation as JSON (slower).")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="With --csv: the input's text encoding.")
@click.option("--confidence", type=PROBABILITY, help="Classifier confidence (0 to 1) to record in the explanation.")
@click.option("--source", help="Channel the report came in on (for rules that match on source).")
@click.option("--at", "at", help="ISO 8601 time with offset for time-of-day rules [default: now].")
@click.option("--load", "loads", multiple=True, help="UNIT=N open tasks, to see capacity overflow; repeatable.")
@click.option("--position", "positions", multiple=True, help="UNIT=LAT,LON of a field team; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def route(
    pack: str | None,
    city_flag: str | None,
    lat: float | None,
    lon: float | None,
    category: str | None,
    csv_in: Path | None,
    csv_out: Path | None,
    category_col: str,
    lat_col: str,
    lon_col: str,
    explain: bool,
    encoding: str,
    confidence: float | None,
    source: str | None,
    at: str | None,
    loads: tuple[str, ...],
    positions: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show which unit of PACK an incident at LAT/LON would go to, and why; or route a whole CSV (--csv, --out).

    PACK is a city pack directory or 'demo' [default: CITYLOOP_CITY, else demo]. With --csv every row is written
    to --out with its unit, the rule that decided and, for a row that could not be routed, the problem; progress
    and a summary go to stderr. Time-of-day rules see --at (default now) for every row.
    """
    from dispatch import Dispatcher

    if csv_in is not None or csv_out is not None:
        _route_file(pack or city_flag, csv_in, csv_out, category_col, lat_col, lon_col, at, explain, encoding)
        return
    if lat is None or lon is None or category is None:
        raise click.UsageError("give --lat, --lon and --category (or --csv IN --out OUT for a file)")
    city = load_pack(pack or city_flag)
    if city.category(category) is None:
        known = ", ".join(c.code for c in city.spec.categories)
        raise click.UsageError(f"unknown category {category!r}; {city.name} has: {known}")
    now = _when(at)
    load_map = {}
    for unit, count in _pairs(loads, "--load"):
        _known_unit(city, unit, "--load")
        if not (count.isascii() and count.isdigit()):
            raise click.UsageError(f"--load {unit}={count}: the open tasks are a whole number, e.g. {unit}=3")
        load_map[unit] = int(count)
    position_map = {}
    for unit, where in _pairs(positions, "--position"):
        _known_unit(city, unit, "--position")
        position_map[unit] = check_latlon(where, f"--position {unit}={where}")
    assignment = Dispatcher(city).assign(
        category, lat, lon, confidence, source=source, now=now, loads=load_map or None, positions=position_map or None
    )
    if as_json:
        document = {
            "unit": assignment.unit_id,
            "rule": assignment.rule,
            "co_notify": list(assignment.co_notify),
            "explanation": assignment.explanation,
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    explanation = assignment.explanation
    click.echo(f"{category} at ({lat}, {lon}) -> {assignment.unit_id}  [rule {assignment.rule}, pack {city.version}]")
    click.echo("features: " + ", ".join(f"{k}={v or '-'}" for k, v in explanation["features"].items()))
    if explanation.get("boundary_m") is not None:
        click.echo(f"distance to the edge of the deciding area: {explanation['boundary_m']} m")
    for step in explanation.get("rules", []):
        click.echo(f"  rule {step['rule']} (priority {step['priority']}): {step['outcome']}: {step['why']}")
    for candidate in explanation["candidates"]:
        if candidate["outcome"] != "skipped" or len(explanation["candidates"]) <= 12:
            click.echo(f"  {candidate['outcome']:>7}  {candidate['unit']}: {candidate['why']}")
    skipped = sum(c["outcome"] == "skipped" for c in explanation["candidates"])
    if len(explanation["candidates"]) > 12 and skipped:
        click.echo(f"  {skipped} more units handle {category} elsewhere (--json lists them)")
    for key in ("why", "overflow"):
        if key in explanation:
            click.echo(explanation[key])
    if "team" in explanation:
        click.echo(f"nearest team: {json.dumps(explanation['team'])}")
    for notified in explanation.get("co_notify", []):
        click.echo(f"co-notify {notified['unit']}: {notified['why']}")
    if explanation.get("confidence") is not None:
        click.echo(f"confidence: {explanation['confidence']}")


@click.group()
def city() -> None:
    """City packs: write the demo city, check, lint, or build one from open data."""


@city.command("demo")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory to write the pack into.")
def city_demo(out: Path) -> None:
    """Write the generated demo city pack (Lindenhaven) to OUT, to read or adapt."""
    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city

    pack = load_city_pack(write_demo_city(out))
    click.echo(f"wrote {pack.name} ({len(pack.spec.categories)} categories, {len(pack.spec.units)} units) to {out}")


@city.command("check")
@click.argument("pack_dir", type=click.Path(path_type=Path))
def city_check(pack_dir: Path) -> None:
    """Load a pack and report the first problem that stops it from loading."""
    from dispatch import InvalidCityPack, load_city_pack

    try:
        pack = load_city_pack(pack_dir)
    except InvalidCityPack as exc:
        raise click.ClickException(str(exc)) from None
    sizes = ", ".join(f"{k}: {len(v.feature_ids)} features" for k, v in pack.layers.items())
    click.echo(
        f"{pack.name} {pack.version}: {len(pack.spec.categories)} categories, {len(pack.spec.units)} units; {sizes}"
    )
    for layer in pack.layers.values():
        if layer.repaired:
            click.echo(f"warning: layer {layer.id}: repaired invalid polygons {list(layer.repaired)}")


@city.command("lint")
@click.argument("pack", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--min-area", default=100.0, show_default=True, type=float, help="Ignore overlaps and gaps below (m²).")
@click.option(
    "--min-width",
    default=10.0,
    show_default=True,
    type=float,
    help="Ignore overlaps and gaps nowhere wider than this (m): digitising slivers between layers.",
)
def city_lint(pack: str | None, as_json: bool, min_area: float, min_width: float) -> None:
    """Find routing defects in PACK: overlaps, gaps, shadowed rules, units without area, categories without SLA.

    Exits 1 when there are errors (warnings alone exit 0).
    """
    from dispatch.lint import lint_city_pack

    report = lint_city_pack(load_pack(pack), min_area_m2=min_area, min_width_m=min_width)
    click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if as_json else report.text())
    sys.exit(0 if report.ok else 1)


@city.command("init")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--layer", "layers", multiple=True, required=True, help="NAME=FILE.geojson[:ID_PROPERTY]; repeatable.")
@click.option("--name", help="City name [default: OUT's directory name].")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone, e.g. America/New_York.")
@click.option("--boundary", help="Layer whose union is the city (for gap checks) [default: every layer].")
@click.option("--mapping", type=click.Path(path_type=Path, exists=True), help="CSV with columns category,unit.")
@click.option(
    "--from-311",
    "history",
    multiple=True,
    help="Historical requests: a CSV file, a directory (its *.csv) or a glob such as 'exports/311_*.csv'; repeatable.",
)
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="Text encoding of the --from-311 and --mapping files, e.g. cp1252 or latin-1 (a UTF-8 byte-order mark is "
    "skipped).",
)
@click.option("--category-col", help="Column of the category in --from-311 files (any header spelling).")
@click.option("--agency-col", help="Column of the handling agency in --from-311 files.")
@click.option("--descriptor-col", help="Column whose common values become the categories' keywords.")
@click.option("--district-col", help="Column of the district (e.g. community board): one field team per district.")
@click.option(
    "--due-col",
    help="Column of the due date the city's system recorded: each category's resolve target is learnt from it "
    "(calendar or working clock, whichever reproduces more) and the share reproduced is reported.",
)
@click.option("--created-col", default="created date", show_default=True, help="With --due-col: the creation time.")
@click.option(
    "--district-layer",
    help="Layer of districts: with --district-col, the layer its values name; with --mapping, a team per feature.",
)
@click.option(
    "--district-agencies",
    help="Comma-separated units (agencies, as the data names them) that get a team per district [default: all].",
)
@click.option(
    "--min-rows", default=1, show_default=True, type=click.IntRange(min=1), help="Skip categories seen fewer times."
)
@click.option("--sla-acknowledge", default="1d", show_default=True, help="Default acknowledge target.")
@click.option("--sla-resolve", default="10d", show_default=True, help="Default resolve target.")
@click.option("--sla-clock", default="working", show_default=True, type=click.Choice(["working", "calendar"]))
@click.option("--min-width", default=10.0, show_default=True, type=float, help="Lint: sliver width to ignore (m).")
@click.option("--force", is_flag=True, help="Write into OUT even if it is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def city_init(out: Path, **options: Any) -> None:
    """Build a city pack in OUT from GeoJSON layers and a category mapping (given, or learned from 311 data).

    \b
    Either --mapping FILE.csv (columns category,unit[,unit_name]), or
    --from-311 FILE.csv --category-col C --agency-col A [--district-col D --district-layer L]:
    each category goes to the agency that handled most of its requests. Then lints the pack.
    """
    from dispatch import DispatchError
    from dispatch.onboard import HistorySource, LayerSource, Sla, init_city_pack

    history = None
    agencies = tuple(a.strip() for a in (options["district_agencies"] or "").split(",") if a.strip())
    if options["due_col"] and not options["history"]:
        raise click.UsageError("--due-col reads --from-311 files")
    if options["mapping"] and options["district_col"]:
        raise click.UsageError("--district-col reads --from-311 files; with --mapping give --district-layer alone")
    if options["history"]:
        if not options["category_col"] or not options["agency_col"]:
            raise click.UsageError("--from-311 needs --category-col and --agency-col")
        history = HistorySource(
            expand_paths(options["history"], "--from-311"),
            options["category_col"],
            options["agency_col"],
            options["descriptor_col"],
            options["district_col"],
            options["district_layer"],
            options["min_rows"],
            options["encoding"],
        )
    try:
        layers = [LayerSource.parse(text) for text in options["layers"]]
    except DispatchError as exc:
        raise click.UsageError(str(exc)) from None
    from streams.slalearn import check_columns, learn_into_pack

    try:
        if options["due_col"]:  # a mistyped column refused before the pack is written
            check_columns(history, options["created_col"], options["due_col"])
        onboarding = init_city_pack(
            out,
            layers,
            name=options["name"] or out.resolve().name,
            timezone=options["timezone"],
            boundary=options["boundary"],
            mapping_csv=options["mapping"],
            history=history,
            sla=Sla(options["sla_acknowledge"], options["sla_resolve"], options["sla_clock"]),
            overwrite=options["force"],
            encoding=options["encoding"],
            district_layer=None if history else options["district_layer"],
            district_agencies=agencies,
            min_width_m=options["min_width"],
        )
        learning = (
            learn_into_pack(onboarding, history, options["created_col"], options["due_col"], options["min_width"])
            if options["due_col"]
            else None
        )
    except DispatchError as exc:
        raise click.ClickException(str(exc)) from None
    if learning is not None:
        onboarding.notes.append(learning.line())
    if options["as_json"]:
        summary = _init_summary(onboarding)
        if learning is not None:
            summary["sla_learnt"] = {"rows": learning.pack_compared, "reproduced": learning.pack_within,
                                     "share": round(learning.share, 4), "unreadable": learning.unreadable,
                                     "not_in_pack": learning.not_in_pack,
                                     "categories": {k: vars(v) for k, v in learning.learnt.items()}}  # fmt: skip
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_init(onboarding)
    if not onboarding.lint.ok:  # written, but not fit to run: the exit code says so to a script
        errors = len(onboarding.lint.errors)
        click.echo(f"the pack is written to {out}, but lint found {errors} error(s): fix them before use", err=True)
        sys.exit(1)


def expand_paths(values: tuple[str, ...], option: str) -> tuple[Path, ...]:
    """Each value a file, a directory (its ``*.csv``, sorted) or a glob; one that names nothing is a usage error."""
    import glob

    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
        elif glob.has_magic(value):
            found = sorted(Path(p) for p in glob.glob(value) if Path(p).is_file())
        elif path.is_file():
            found = [path]
        else:
            raise click.UsageError(f"{option} {value!r}: no such file or directory")
        if not found:
            raise click.UsageError(f"{option} {value!r}: no CSV files there")
        paths.extend(p for p in found if p not in paths)
    return tuple(paths)


def _init_summary(onboarding: Any) -> dict[str, Any]:
    pack = onboarding.pack
    result: dict[str, Any] = {
        "pack": str(pack.path),
        "name": pack.name,
        "version": pack.version,
        "layers": [vars(choice) for choice in onboarding.layers],
        "categories": len(pack.spec.categories),
        "units": len(pack.spec.units),
        "routes": [{"category": c, "unit": u, "support": n, "share": round(s, 3)} for c, u, n, s in onboarding.routes],
        "notes": onboarding.notes,
        "lint": onboarding.lint.as_dict(),
    }
    if onboarding.mapping is not None:
        result["baseline_agency"] = onboarding.mapping.majority_agency
        result["rows_used"] = onboarding.mapping.rows_used
    if onboarding.districts is not None:
        result["districts"] = {
            "mapped": onboarding.districts.to_feature,
            "agreement": round(onboarding.districts.agreement, 4),
            "unmatched": onboarding.districts.unmatched,
        }
    return result


def _print_init(onboarding: Any) -> None:
    pack = onboarding.pack
    click.echo(f"wrote {pack.name} to {pack.path} (pack {pack.version})")
    for choice in onboarding.layers:
        name = f", names from {choice.name_property}" if choice.name_property else ""
        click.echo(
            f"  layer {choice.layer}: {choice.features} features, id {choice.id_property} ({choice.reason}){name}"
        )
    if onboarding.mapping is not None:
        mapping = onboarding.mapping
        unclear = [r for r in mapping.routes if r.share < 0.8]
        click.echo(
            f"  learned {len(mapping.routes)} categories from {mapping.rows_used} requests "
            f"({mapping.rows_skipped} without category or agency); most frequent agency: {mapping.majority_agency}"
        )
        for route in unclear[:10]:
            click.echo(f"    unclear: {route.category!r} -> {route.agency} ({route.share:.0%} of {route.support})")
    else:
        click.echo(f"  {len(onboarding.routes)} categories from the mapping")
    if onboarding.districts is not None:
        districts = onboarding.districts
        click.echo(
            f"  district values -> features: {len(districts.to_feature)} mapped, agreement with the polygons "
            f"{districts.agreement:.1%} of {districts.votes} geolocated requests; unmatched: "
            + (", ".join(f"{v!r} ({n})" for v, n in list(districts.unmatched.items())[:8]) or "none")
        )
    for note in onboarding.notes:
        click.echo(f"  {note}")
    click.echo(f"  {len(pack.spec.categories)} categories, {len(pack.spec.units)} units; default SLAs: edit city.yaml")
    click.echo("lint:")
    click.echo(onboarding.lint.text())
