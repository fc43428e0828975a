"""A circuit breaker per connector, and the back-off between attempts at one record. Pure: time is a parameter.

closed: send. After ``failures`` failed attempts in a row it opens: nothing is sent to that system for
``cooldown``. Then it is half-open: one attempt goes through (the record at the head of the connector's queue);
success closes it, failure opens it for another cooldown. The breaker only decides *when* to try: the records
themselves wait in the connector's queue (Redis), so an open breaker delays delivery and loses nothing, and, as
every connector has its own queue and breaker, holds back no other system's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failures: int
    cooldown_s: float
    state: State = State.CLOSED
    failed_in_a_row: int = 0
    opened_at: float | None = None

    def allows(self, now: float) -> bool:
        """Whether an attempt may go out at ``now`` (moves an open breaker whose cooldown ended to half-open)."""
        if self.state is State.OPEN and self.opened_at is not None and now - self.opened_at >= self.cooldown_s:
            self.state = State.HALF_OPEN
        return self.state is not State.OPEN

    def wait_s(self, now: float) -> float:
        """Seconds until an attempt is allowed (0 when it is now)."""
        if self.state is not State.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - now)

    def succeeded(self) -> None:
        self.state = State.CLOSED
        self.failed_in_a_row = 0
        self.opened_at = None

    def failed(self, now: float) -> None:
        self.failed_in_a_row += 1
        if self.state is State.HALF_OPEN or self.failed_in_a_row >= self.failures:
            self.state = State.OPEN
            self.opened_at = now

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN


def backoff_s(attempts: int, initial_s: float, max_s: float) -> float:
    """Wait after the ``attempts``-th failed attempt: initial, 2x, 4x, ... capped at ``max_s``."""
    if attempts < 1:
        return 0.0
    return float(min(max_s, initial_s * 2 ** min(attempts - 1, 62)))
