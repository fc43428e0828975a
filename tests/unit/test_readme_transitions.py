"""The README's table of work-order transitions is the code's table: every README row is in
``feedback.TRANSITIONS`` and every transition there is a README row (event, from, to, sent by, whether it has a guard).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from feedback import ACTIVE, TRANSITIONS, State
from feedback.orders import OPEN, TABLE

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| event | from | to | sent by | guard |"
Row = tuple[str, frozenset[State | None], State, frozenset[str], bool]  # event, from, to, sent by, has a guard


def _state(name: str) -> State:
    try:
        return State(name.strip())
    except ValueError:
        raise AssertionError(f"README transition table: {name.strip()!r} is not a work-order state") from None


def _sources(cell: str) -> frozenset[State | None]:
    """``(new)``, ``any open state [(not a, b)]``, ``any active state`` or a comma list of states."""
    cell = cell.strip()
    if cell == "(new)":
        return frozenset({None})
    if cell.startswith("any open state"):
        rest = cell.removeprefix("any open state").strip()
        if rest:  # the README may spell out what "open" leaves out: it must be exactly that
            named = re.fullmatch(r"\(not (.+)\)", rest)
            assert named, f"README transition table: cannot read {cell!r}"
            assert {_state(n) for n in named.group(1).split(",")} == set(State) - OPEN, cell
        return frozenset(OPEN)
    if cell == "any active state":
        return frozenset(ACTIVE)
    return frozenset(_state(name) for name in cell.split(","))


def readme_rows(text: str) -> list[Row]:
    """The rows of the README's table of transitions, as data."""
    lines = text.splitlines()
    assert lines.count(HEADER) == 1, f"the README should have one table headed {HEADER!r}"
    start = lines.index(HEADER) + 2  # after the header and its |---| line
    rows: list[Row] = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"README transition table: not five cells in {line!r}"
        event, sources, target, actors, guard = cells
        assert re.fullmatch(r"`\w+`", event), f"README transition table: the event is not `code` in {line!r}"
        assert re.fullmatch(r"\*\*\w+\*\*", target), f"README transition table: the target is not **bold** in {line!r}"
        rows.append(
            (
                event.strip("`"),
                _sources(sources),
                _state(target.strip("*")),
                frozenset(actor.strip() for actor in actors.split(",")),
                bool(guard),
            )
        )
    assert rows, "the README's transition table has no rows"
    return rows


def code_rows() -> list[Row]:
    return [(t.event, t.sources, t.target, t.actors, t.guard is not None) for t in TRANSITIONS]


def _show(row: Row) -> str:
    event, sources, target, actors, guard = row
    names = sorted("(new)" if s is None else s.value for s in sources)
    return f"{event}: {', '.join(names)} -> {target.value} by {', '.join(sorted(actors))}{' (guard)' if guard else ''}"


def test_every_readme_row_is_in_the_code_and_every_code_transition_in_the_readme():
    readme, code = Counter(readme_rows(README.read_text(encoding="utf-8"))), Counter(code_rows())
    only_readme = [_show(row) for row in readme - code]
    only_code = [_show(row) for row in code - readme]
    assert not only_readme and not only_code, (
        f"README rows not in feedback.TRANSITIONS: {only_readme}; transitions missing from the README: {only_code}"
    )


def test_the_readme_table_allows_exactly_the_moves_of_the_lookup_table():
    """Row by row and also move by move: (state, event) -> target, as the lifecycle looks it up."""
    moves: dict[tuple[State | None, str], State] = {}
    for event, sources, target, _, _ in readme_rows(README.read_text(encoding="utf-8")):
        for source in sources:
            assert (source, event) not in moves, f"the README allows {event} from {source} twice"
            moves[(source, event)] = target
    code = {key: row.target for key, row in TABLE.items()}
    differ = {key for key in set(moves) | set(code) if moves.get(key) != code.get(key)}
    wrong = sorted(f"{event} from {source}: README {moves.get((source, event))}, code {code.get((source, event))}"
                   for source, event in differ)  # fmt: skip
    assert not wrong, wrong


def test_the_parser_sees_a_changed_row():
    """A README whose row differs from the code (a wrong target, a missing source, an extra actor) fails the check."""
    text = README.read_text(encoding="utf-8")
    original = "| `ack` | dispatched | **acknowledged** | unit | |"
    assert original in text
    for changed in (
        "| `ack` | dispatched | **in_progress** | unit | |",
        "| `ack` | dispatched, waiting | **acknowledged** | unit | |",
        "| `ack` | dispatched | **acknowledged** | unit, ops | |",
        "| `ack` | dispatched | **acknowledged** | unit | only on Tuesdays |",
    ):
        assert Counter(readme_rows(text.replace(original, changed))) != Counter(code_rows()), changed
