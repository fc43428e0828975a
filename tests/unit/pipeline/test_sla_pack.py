"""A city pack's SLA conventions reach the tasks the worker sends: where a deadline at closing time goes."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatch import CityPack, load_city_pack
from tests.unit.pipeline.conftest import Loop, Words, report


def edited_pack(pack: CityPack, target: Path, change: Callable[[dict[str, Any]], None]) -> CityPack:
    """A copy of the demo city with ``change`` applied to its city.yaml."""
    shutil.copytree(pack.path, target)
    path = target / "city.yaml"
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))
    return load_city_pack(target)


def pothole(document: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in document["categories"] if c["code"] == "pothole")


@pytest.mark.parametrize(
    ("at_close", "acknowledge_by"),
    [(None, "2026-11-30T17:00:00Z"), ("closing", "2026-11-30T17:00:00Z"), ("next_opening", "2026-12-01T07:00:00Z")],
)
def test_a_task_deadline_at_closing_time_follows_the_packs_calendar(pack, tmp_path, at_close, acknowledge_by):
    """Monday 11:00 in Lindenhaven (08:00-18:00) plus 7 working hours is 18:00 exactly: it stays there by default
    and with ``closing``; ``next_opening`` moves it to Tuesday 08:00. Resolve (1 working day) is not at closing."""

    def change(document: dict[str, Any]) -> None:
        pothole(document)["sla"] = {"acknowledge": "7h", "resolve": "1d", "clock": "working"}
        if at_close is not None:
            document["calendar"]["at_close"] = at_close

    loop = Loop(edited_pack(pack, tmp_path / "pack", change), Words({"hole": ("pothole", 0.97)}))
    asyncio.run(loop.reports(report(1)))
    [task] = loop.sink.on("tasks")
    assert task["sla"]["acknowledge_by"] == acknowledge_by
    assert task["sla"]["resolve_by"] == "2026-12-01T10:00:00Z"
