"""A versioned model registry in a directory: immutable model files and a one-line pointer to the current one.

Layout (a shared volume in Kubernetes or compose; a directory on one machine)::

    <registry>/models/v0001.cityloop   immutable model files (classifiers.modelfile), never rewritten
    <registry>/CURRENT                  the current version's name, e.g. "v0002", replaced by an atomic rename
    <registry>/history.jsonl            every promotion and rollback, appended: version, at, why, scores

Why a directory and not Redis: a model file is megabytes, every worker already reads files, a city's operators
can see, back up and copy it with ordinary tools, and the rename of ``CURRENT`` is atomic on any POSIX file
system (a worker reads the old name or the new, never half of one). A worker watches ``CURRENT`` with one
``stat`` per poll.

A version is published once (``os.link`` refuses to replace a file, so two trainers never overwrite each other's
version) and only a file that loads is promoted: a damaged file is refused here as well as by the workers.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from classifiers.errors import ModelFileError

VERSION_RE = re.compile(r"^v(\d{4,})$")
SUFFIX = ".cityloop"


class RegistryError(ModelFileError):
    """The registry cannot do what was asked (unknown version, nothing to roll back to, a damaged pointer)."""


@dataclass(frozen=True)
class Stamp:
    """What a worker compares between polls: ``CURRENT``'s identity; a change means "read it again"."""

    inode: int
    mtime_ns: int
    size: int


class ModelRegistry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.models = self.root / "models"
        self.pointer = self.root / "CURRENT"
        self.history_file = self.root / "history.jsonl"

    # ------------------------------------------------------------ reading

    def path_of(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise RegistryError(f"{version!r} is not a version name (v0001, v0002, ...)")
        return self.models / f"{version}{SUFFIX}"

    def versions(self) -> list[str]:
        """Every published version, oldest first."""
        if not self.models.is_dir():
            return []
        names = [p.name[: -len(SUFFIX)] for p in self.models.iterdir() if p.name.endswith(SUFFIX)]
        return sorted((n for n in names if VERSION_RE.match(n)), key=lambda n: int(n[1:]))

    def stamp(self) -> Stamp | None:
        """``CURRENT``'s identity (one stat), or None when nothing was ever promoted."""
        try:
            st = self.pointer.stat()
        except FileNotFoundError:
            return None
        return Stamp(st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> str | None:
        """The current version's name, or None when nothing was ever promoted."""
        try:
            name = self.pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not VERSION_RE.match(name):
            raise RegistryError(f"{self.pointer} names {name[:40]!r}, not a version")
        return name

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = self.history_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # ------------------------------------------------------------ writing

    def publish(self, model_file: Path | str) -> str:
        """Copy a model file in as the next version (immutable); its version name."""
        from classifiers.modelfile import read_metadata

        read_metadata(model_file)  # a file that is not a model never gets a version
        data = Path(model_file).read_bytes()
        self.models.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temp(self.models, data)
        try:
            while True:
                existing = self.versions()
                version = f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"
                try:
                    os.link(tmp, self.path_of(version))  # fails if another trainer took this number meanwhile
                    break
                except FileExistsError:
                    continue
        finally:
            os.unlink(tmp)
        os.chmod(self.path_of(version), 0o444)
        return version

    def promote(self, version: str, *, at: datetime, why: str, scores: dict[str, Any] | None = None) -> None:
        """Make ``version`` current (it must load), by an atomic rename of ``CURRENT``; recorded in the history."""
        from classifiers.modelfile import load_model

        path = self.path_of(version)
        if not path.exists():
            raise RegistryError(f"no version {version} in {self.models}")
        load_model(path)  # refuse a damaged file here rather than in every worker
        previous = self.current()
        tmp = self._write_temp(self.root, f"{version}\n".encode())
        os.replace(tmp, self.pointer)
        entry = {"version": version, "previous": previous, "at": at.isoformat(), "why": why, "scores": scores or {}}
        with self.history_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rollback(self, *, at: datetime, why: str = "rollback") -> str:
        """Undo the last change of ``CURRENT``: the version current before it is current again; its name."""
        current = self.current()
        if current is None:
            raise RegistryError(f"nothing was promoted in {self.root}: no version to roll back from")
        history = self.history()
        last = history[-1] if history else {}
        if last.get("version") != current:
            raise RegistryError(f"{self.pointer} was changed outside the registry's history; promote a version by name")
        if not last.get("previous"):
            raise RegistryError(f"{current} has no earlier version to roll back to; promote one by name")
        previous = str(last["previous"])
        self.promote(previous, at=at, why=f"{why} (from {current})")
        return previous

    @staticmethod
    def _write_temp(directory: Path, data: bytes) -> str:
        """A fully written, synced temporary file in ``directory`` (same file system: rename and link are atomic)."""
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp
