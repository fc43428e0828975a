"""The result of dispatching one incident."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Assignment:
    """The unit chosen for one incident, the rule that decided, the other units to tell, and why.

    ``explanation`` is a JSON-serialisable dict. The dispatcher builds it on first
    access (the parts that depend on the batch are computed once for the whole
    batch then), so deciding a batch does not pay for explanations nobody reads.
    Treat it as read-only: parts of it are shared between assignments.
    Equality and hashing look at the decision (unit, rule, co-notified units), not the explanation.
    """

    __slots__ = ("unit_id", "rule", "co_notify", "_explanation", "_explain", "_row")

    def __init__(self, unit_id: str, rule: str, explanation: dict[str, Any], co_notify: tuple[str, ...] = ()) -> None:
        self.unit_id = unit_id
        self.rule = rule
        self.co_notify = tuple(co_notify)
        self._explanation: dict[str, Any] | None = explanation
        self._explain: Callable[[int], dict[str, Any]] | None = None
        self._row = 0

    @classmethod
    def deferred(
        cls, unit_id: str, rule: str, co_notify: tuple[str, ...], explain: Callable[[int], dict[str, Any]], row: int
    ) -> Assignment:
        """An assignment whose explanation is ``explain(row)``, built when first read."""
        assignment = object.__new__(cls)
        assignment.unit_id = unit_id
        assignment.rule = rule
        assignment.co_notify = co_notify
        assignment._explanation = None
        assignment._explain = explain
        assignment._row = row
        return assignment

    @property
    def explanation(self) -> dict[str, Any]:
        if self._explanation is None:
            self._explanation = self._explain(self._row)  # type: ignore[misc]
            self._explain = None  # let the batch go once every explanation is built
        return self._explanation

    def _key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.unit_id, self.rule, self.co_notify)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        notify = f", co_notify={self.co_notify!r}" if self.co_notify else ""
        return f"Assignment(unit_id={self.unit_id!r}, rule={self.rule!r}{notify})"
