"""The backtest's report: one self-contained HTML page (plots embedded as PNG) and the figures as JSON.

The page is what a city reads before going live: does the pack send each request where the city sent it, where
does it not (a map), what load each unit would carry by hour and day, do the SLA clocks give the city's due dates
and verdicts, and how many reports would have been merged into one incident.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from streams.backtest import Backtest

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _map(pack: Any, result: Backtest) -> str:
    import matplotlib.pyplot as plt
    import shapely

    figure, axes = plt.subplots(figsize=(7.5, 7.5))
    layer = pack.layers[pack.spec.boundary] if pack.spec.boundary else next(iter(pack.layers.values()))
    for geometry in layer.geometries:
        for part in shapely.get_parts(geometry):
            x, y = part.exterior.xy
            axes.plot(x, y, color="#999999", linewidth=0.5)
    shown = result.agrees >= 0
    agree, disagree = shown & (result.agrees == 1), shown & (result.agrees == 0)
    axes.scatter(
        result.lons[agree], result.lats[agree], s=2, color="#4a7fb5", alpha=0.4, label=f"{agree.sum():,} agree"
    )
    axes.scatter(
        result.lons[disagree], result.lats[disagree], s=9, color="#d62728", label=f"{disagree.sum():,} elsewhere"
    )
    axes.set_aspect(1 / np.cos(np.radians(np.nanmean(result.lats[shown]) if shown.any() else 0.0)))
    axes.set_title(f"Where the pack and the records disagree ({layer.id} outlines)")
    axes.legend(loc="upper left", markerscale=3)
    axes.set_xticks([])
    axes.set_yticks([])
    try:
        return _png(figure)
    finally:
        plt.close(figure)


def _workload(result: Backtest) -> str:
    import matplotlib.pyplot as plt

    units = list(result.workload)
    columns = 2
    rows = max(1, (len(units) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(11, 2.2 * rows), squeeze=False)
    for ax, unit in zip(axes.flat, units, strict=False):
        matrix = result.workload[unit]
        ax.imshow(matrix, aspect="auto", cmap="Blues")
        ax.set_title(f"{unit}: {int(matrix.sum()):,} requests", fontsize=9)
        ax.set_yticks(range(7), DAYS, fontsize=7)
        ax.set_xticks(range(0, 24, 3), [f"{h:02d}" for h in range(0, 24, 3)], fontsize=7)
    for ax in list(axes.flat)[len(units) :]:
        ax.axis("off")
    figure.suptitle("Workload per unit by day and hour (local time of creation)", fontsize=10)
    figure.tight_layout()
    try:
        return _png(figure)
    finally:
        plt.close(figure)


def _due_offsets(result: Backtest) -> str | None:
    if result.due_offsets_h.size == 0:
        return None
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3))
    clipped = np.clip(result.due_offsets_h, -72, 72)
    axes.hist(clipped, bins=np.arange(-72.5, 73.5, 1.0), color="#4a7fb5")
    axes.set_xlabel("CityLoop's due date minus the city's recorded one, hours (clipped at +-72)")
    axes.set_ylabel("requests")
    axes.set_title("SLA due dates against the city's own")
    try:
        return _png(figure)
    finally:
        plt.close(figure)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    lines = [
        ("Requests in the exports", f"{summary['requests']:,}"),
        (
            "Replayed",
            f"{summary['replayed']:,}" + "".join(f"; {n:,} not ({why})" for why, n in summary["not_replayed"].items()),
        ),
        ("Sent to the ops centre (fallback)", _pct(summary["fallback_share"])),
    ]
    if summary.get("without_creation_time"):
        lines.append(("Replayed without a readable creation time (no workload, no merge)",
                      f"{summary['without_creation_time']:,}"))  # fmt: skip
    if "agency" in summary:
        agency = summary["agency"]
        lines.append(
            (
                "Routed to the agency the city recorded",
                f"{_pct(agency['agreement'])} of "
                f"{agency['compared']:,} ({agency['no_unit_for_agency']:,} for agencies without a unit)",
            )
        )
    if "district" in summary:
        district = summary["district"]
        lines.append(
            (
                f"Recorded district agrees with the {district['layer']} polygons",
                f"{_pct(district['agreement'])} of {district['compared']:,}",
            )
        )
    if "sla" in summary:
        sla = summary["sla"]
        lines.append(("Due date within an hour of the city's", f"{_pct(sla['due_within_1h'])} of {sla['compared']:,}"))
        lines.append(
            (
                "On-time verdict agrees with the city's",
                f"{_pct(sla['on_time_agreement'])} of {sla['on_time_verdicts_compared']:,} closed requests",
            )
        )
    merges = summary["merges"]
    if merges.get("replayed"):
        lines.append(
            (
                "Would have merged into an earlier incident",
                f"{merges['merged']:,} "
                f"({_pct(merges['merged_share'])}); {merges['incidents']:,} incidents ({merges['rule']})",
            )
        )
    lines.append(("Routing speed", f"{summary['routing']['rows_per_s']:,} requests/s"))
    return lines


def write_report(pack: Any, result: Backtest, out: Path) -> tuple[Path, Path]:
    """``out/backtest.html`` and ``out/backtest.json``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _headline(summary))
    disagreeing = summary.get("agency", {}).get("most_disagreeing", [])
    heading = (
        "<h2>Agencies most often routed elsewhere</h2><table><tr><th>agency</th><th>agree</th><th>elsewhere</th></tr>"
    )
    worst = "".join(
        f"<tr><td>{html.escape(d['agency'])}</td><td>{d.get('agree', 0):,}</td><td>{d.get('disagree', 0):,}</td></tr>"
        for d in disagreeing
    )
    plots = [("map", _map(pack, result)), ("workload", _workload(result)), ("sla", _due_offsets(result))]
    figures = "".join(f'<figure id="{name}"><img alt="{name}" src="{src}"></figure>' for name, src in plots if src)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest: {html.escape(pack.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} th, td {{ text-align: left; padding: .3rem .8rem;
border-bottom: 1px solid #ddd; vertical-align: top; }} th {{ font-weight: 600; }}
figure {{ margin: 1.5rem 0; }} img {{ max-width: 100%; }} .note {{ color: #555; font-size: .9rem; }}
</style></head><body>
<h1>Backtest: {html.escape(pack.name)} (pack {html.escape(pack.version)})</h1>
<p class="note">{summary["requests"]:,} requests from {len(summary["files"])} export(s), replayed through the pack with
the production dispatcher, SLA clocks and merge index. The records are the yardstick.</p>
<table>{table}</table>
{heading + worst + "</table>" if worst else ""}
{figures}
</body></html>
"""
    html_path, json_path = out / "backtest.html", out / "backtest.json"
    html_path.write_text(page, encoding="utf-8")
    json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return html_path, json_path
