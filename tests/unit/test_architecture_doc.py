"""docs/ARCHITECTURE.md names only modules and objects that exist, and its stage lists are the engine's."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def named_paths(text: str) -> set[str]:
    """Every `path/like/this.py` or `package/` in backticks."""
    return set(re.findall(r"`((?:streams|classifiers|dispatch|feedback|tests|docs|deploy|bench)/[\w/.]*)`", text))


def named_objects(text: str) -> set[str]:
    """Every `module.path.Object` in backticks, e.g. `streams.pipeline.build.task_record`."""
    return set(re.findall(r"`((?:streams|classifiers|dispatch|feedback)(?:\.\w+)+)`", text))


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_path_it_names_exists():
    paths = named_paths(DOC.read_text())
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/ARCHITECTURE.md names what does not exist: {missing}"


def test_every_object_it_names_can_be_imported():
    objects = named_objects(DOC.read_text())
    assert "streams.pipeline.build.task_record" in objects
    broken = sorted(o for o in objects if not resolves(o))
    assert not broken, f"docs/ARCHITECTURE.md names what cannot be imported: {broken}"


def test_the_stage_lists_are_the_engines_docstrings():
    """The table's stage lists are the ones the engine declares on its process_* methods."""
    from streams.engine import Engine

    doc = DOC.read_text()
    for method in (Engine.process_reports, Engine.process_readings, Engine.process_feedback):
        stages = (method.__doc__ or "").strip().splitlines()[0].rstrip(".")
        stages = stages.split(": ", 1)[-1].replace("->", "→")
        assert stages in doc, f"{method.__name__} declares {stages!r}, which docs/ARCHITECTURE.md does not list"


def test_the_checks_catch_a_renamed_module():
    assert named_paths("see `streams/nowhere.py`") == {"streams/nowhere.py"}
    assert not (ROOT / "streams/nowhere.py").exists()
    assert not resolves("streams.pipeline.build.no_such_builder") and resolves("streams.ids.task_id_for")
