"""The dependency rules hold: only streams talks to Faust/Kafka; domain packages are independent of each other;
the API does not import the worker's processing; no import cycle inside a package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    """import-linter checks the contracts declared in pyproject.toml."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run(
        [command, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken" in result.stdout
    for contract in ("Only streams talks to Faust and Kafka", "Domain packages are independent of each other",
                     "The API does not import the worker's processing",
                     "No import cycles between the modules of a package"):  # fmt: skip
        assert f"{contract} KEPT" in result.stdout


MAX_MODULE_LINES = 450


def module_lengths() -> dict[str, int]:
    return {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in ("streams", "classifiers", "dispatch", "feedback")
        for path in (ROOT / package).rglob("*.py")
    }


def test_no_module_is_over_450_lines():
    """Past that a module does several jobs; split it by job (docs/ARCHITECTURE.md lists what lives where)."""
    lengths = module_lengths()
    assert len(lengths) > 60
    assert lengths["streams/engine.py"] <= 250, "the engine is the declaration of the stages, not their code"
    over = {path: n for path, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"
