"""What ``cityloop city lint`` reports: each :class:`Finding` and the :class:`LintReport` that holds them.

A finding is an error, a warning or a note with a code, the key in
``city.yaml`` (or the layer) it is about, a sentence for a person and details
for a program; the report prints as text or as a dict for JSON. Only errors fail
a lint; a note records a choice a pack may well mean (a report-only category)
so that it is seen, not fixed. :mod:`dispatch.lint` makes the findings and
re-exports both classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    severity: str  # "error", "warning" or "note"
    code: str
    where: str  # key in city.yaml (or a layer file)
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LintReport:
    pack: str
    version: str
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "note"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "version": self.version,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "notes": len(self.notes),
            "findings": [asdict(f) for f in self.findings],
        }

    def text(self) -> str:
        notes = f", {len(self.notes)} note(s)" if self.notes else ""
        lines = [f"{self.pack} {self.version}: {len(self.errors)} error(s), {len(self.warnings)} warning(s){notes}"]
        for finding in self.findings:
            lines.append(f"{finding.severity:>7} {finding.code} at {finding.where}: {finding.message}")
        return "\n".join(lines)


def some(codes: list[str], shown: int = 6) -> str:
    """The first ``shown`` codes, and how many more, for a finding's message."""
    more = f" and {len(codes) - shown} more" if len(codes) > shown else ""
    return ", ".join(codes[:shown]) + more
