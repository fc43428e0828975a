"""Errors of the dispatch package; agents catch :class:`DispatchError` per event."""

from __future__ import annotations


class DispatchError(Exception):
    """Base error of the dispatch package."""


class InvalidCityPack(DispatchError):
    """A city pack that cannot be loaded; the message names the file, key and problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}" if key and key != "-" else f"{file}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class NoResponsibleUnit(DispatchError):
    """No unit, not even the fallback, can take an incident."""
