"""What `cityloop demo` shows a person: start-up steps, the board, a progress table and the summary.

Everything here is text for an 80-column terminal (a test checks the width):
the progress is a table with a header, like ``vmstat``, a row every few
seconds; the board of URLs and tokens is printed before the run and again
after it, so it never scrolls out of reach.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

WIDTH = 79  # fits an 80-column terminal without wrapping
LABEL = 15  # the summary's label column

PROGRESS_COLUMNS = (  # (heading, width): room for "99,999" and a space in every column
    ("time", 6),
    ("reports", 8),
    ("incidents", 10),
    ("tasks", 7),
    ("triage", 7),
    ("dead", 7),
    ("acked", 7),
    ("resolved", 9),
    ("closed", 7),
    ("late", 7),
)


def progress_header() -> str:
    return "".join(f"{name:>{width}}" for name, width in PROGRESS_COLUMNS)


def progress_row(elapsed: float, counts: dict[str, int]) -> str:
    """One row of the progress table: ``counts`` has a value per column but time."""
    cells = [f"{elapsed:.0f}s"] + [f"{counts[name]:,}" for name, _ in PROGRESS_COLUMNS[1:]]
    return "".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, PROGRESS_COLUMNS, strict=True))


def step(name: str, detail: str, seconds: float | None = None) -> str:
    """A start-up step: ``  worker   ready  9.8 s``, the time right-aligned when there is room."""
    line = f"  {name:<8} {detail}"
    if seconds is None:
        return line
    took = f"{seconds:.1f} s"
    room = WIDTH - len(line) - len(took)
    return f"{line}{' ' * room}{took}" if room >= 2 else f"{line}  ({took})"


def ready_link(api_url: str, page: str, token: str) -> str:
    """A page that logs itself in: the token rides in the fragment, which the browser never sends to the server."""
    return f"{api_url}/{page}#token={token}"


def board(
    *,
    api_url: str,
    metrics_url: str,
    kafka: str,
    prefix: str,
    token: str,
    live: bool,
    crew: tuple[str, str] | None = None,
) -> list[str]:
    """The URLs, the ops-centre token and commands ready to paste into another terminal.

    ``crew`` is one unit's name and token: its crew app gets a ready link too. A ready link is printed whole on a
    line of its own, the only lines that may pass 80 columns: a terminal wraps them, and a click or a copy takes
    the whole link.
    """
    heading = (
        "the board: paste these into another terminal while the demo runs"
        if live
        else "the board as it was (the demo has stopped them; --keep-running keeps them up after the summary)"
    )
    links = ["  ready links (each logs its page in: anyone with one acts as that unit):", "  - the ops centre's board",
             ready_link(api_url, "board", token)]  # fmt: skip
    if crew is not None:
        links += [*textwrap.wrap(f"  - the crew app of {crew[0]}", WIDTH), ready_link(api_url, "crew", crew[1])]
    return [
        *textwrap.wrap(heading, WIDTH),
        *links,
        f"  board      {api_url}/board (or paste the token below)",
        f"  crews      {api_url}/crew (a unit's token; a phone-sized page)",
        f"  API        {api_url}/docs (OpenAPI; try the routes there)",
        f"  Open311    {api_url}/open311/v2/services.json",
        "             (the simulator writes to Kafka; requests.json lists API POSTs)",
        f"  metrics    {metrics_url}",
        "  streams    cityloop tail tasks \\",
        f"               --kafka {kafka} --topic-prefix {prefix}",
        f"  ops centre export TOKEN={token}",
        f'             curl -sH "Authorization: Bearer $TOKEN" {api_url.removeprefix("http://")}/ops/sla',
    ]


def _fill(label: str, text: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=f"  {label:<{LABEL - 2}}", subsequent_indent=" " * LABEL, break_on_hyphens=False
    )


def _columns(items: Iterable[tuple[str, int]], per_row: int = 3) -> list[str]:
    cells = [f"{name[:17]:<17}{count:>6,}" for name, count in items]
    return [" " * 4 + "  ".join(cells[i : i + per_row]) for i in range(0, len(cells), per_row)]


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary, as lines of at most :data:`WIDTH` characters."""
    s = summary
    events = s["lifecycle_events"]
    incidents = s["incidents"]
    lines = ["", f"summary of {s['played_s']:.0f} s" + (" (interrupted)" if s.get("interrupted") else "")]
    lines += _fill(
        "reports",
        f"{s['reports_sent']:,} sent: {s['reports_valid_unique']:,} valid, {s['reports_resent']:,} resent "
        f"duplicates, {s['reports_garbage']:,} garbage. {s['reports_opened_incident']:,} opened an incident, "
        f"{s['reports_merged']:,} joined one, {s['reports_triaged']:,} went to triage "
        f"({s['triage_decisions_applied']:,} decided).",
    )
    lines += _fill("readings", f"{s['readings_sent']:,} sent")
    lines += _fill(
        "incidents",
        f"{sum(incidents.values()):,}: {incidents.get('report', 0):,} from reports (merge ratio "
        f"{s['merge_ratio']}), {incidents.get('sensor', 0):,} from sensor alarms; "
        f"{s['sensor_alarms_cleared']:,} alarms cleared.",
    )
    lines += _fill("tasks", f"{s['tasks']:,}, by unit:")
    lines += _columns(s["tasks_by_unit"].items())
    lines += _fill(
        "field work",
        f"{events.get('ack', 0):,} acknowledged, {events.get('reject', 0):,} rejected "
        f"({events.get('arbitrate', 0):,} went to arbitration), {events.get('resolve', 0):,} resolved, "
        f"{events.get('verify', 0):,} verified, {events.get('reopen', 0):,} reopened, {events.get('close', 0):,} "
        "closed.",
    )
    for index, (stage, outcome) in enumerate(s["sla"].items()):
        total = outcome["met"] + outcome["missed"]
        share = f"{100 * outcome['met'] / total:.0f}%" if total else "-"
        met = f"{stage}: {share} met ({outcome['met']:,} in time, {outcome['missed']:,} late)"
        lines += _fill("" if index else "SLA", met)
    lines += _fill("", f"{events.get('sla_warning', 0):,} warnings, {events.get('escalate', 0):,} escalations")
    if "crew_actions" in s:
        lines += _fill(
            "API",
            f"{sum(s['crew_actions'].values()):,} crew and supervisor calls answered, "
            f"{sum(s['crew_refused'].values()):,} refused, {s['crew_errors']:,} failed",
        )
    lines += _fill(
        "latency",
        f"report -> task p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms (as seen by a consumer)",
    )
    dead = s["dead_letters"]
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in dead.items())
    lines += _fill("dead letters", f"{sum(dead.values()):,}" + (f": {reasons}" if reasons else ""))
    if s.get("interrupted"):
        lines += _fill(
            "in flight",
            f"{s['reports_unaccounted']:,} valid reports and {s['garbage_without_dead_letter']:,} garbage records "
            "had not come out yet when the demo was stopped (not counted as losses)",
        )
    else:
        losses = s["reports_unaccounted"] + s["garbage_without_dead_letter"]
        lines += _fill(
            "losses",
            f"unexplained losses: {losses} (valid reports in no incident: {s['reports_unaccounted']}, "
            f"garbage without a dead letter: {s['garbage_without_dead_letter']})",
        )
    return lines
