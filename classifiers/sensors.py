"""Static-threshold alarm detection with hysteresis, one state per sensor.

The detector is a pure step function: (state, reading) -> (state, change). The
caller keeps the state (in Redis, so it survives restarts). Hysteresis opens an
alarm when the value crosses ``open_at`` and closes it only when the value
comes back past ``close_at``, so a value hovering at the threshold raises one
alarm, not a burst.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class AlarmChange(Enum):
    OPENED = "opened"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class DetectorState:
    """What a detector remembers about one sensor."""

    alarm: bool = False
    since: float = 0.0  # epoch seconds when the current alarm opened
    last_observed: float = float("-inf")  # epoch seconds of the last reading applied


@dataclass(frozen=True, slots=True)
class ThresholdDetector:
    """Opens past ``open_at`` and clears past ``close_at`` in the given direction."""

    open_at: float
    close_at: float
    direction: str = "above"

    def __post_init__(self) -> None:
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', not {self.direction!r}")
        if self.direction == "above" and not self.close_at < self.open_at:
            raise ValueError("close_at must be below open_at when alarming above")
        if self.direction == "below" and not self.close_at > self.open_at:
            raise ValueError("close_at must be above open_at when alarming below")

    method = "sensor_threshold"  # how an incident it opens was classified

    def step(
        self, state: DetectorState, value: float, observed: float, utc_offset_s: float | None = None
    ) -> tuple[DetectorState, AlarmChange | None]:
        """Apply one reading; readings not newer than the last applied are ignored.

        Ignoring old readings makes a redelivered reading a no-op, which is what
        at-least-once delivery needs. ``utc_offset_s`` is accepted so that every
        detector steps alike; fixed limits do not depend on the time of day.
        """
        if observed <= state.last_observed:
            return state, None
        if self.direction == "above":
            opens, clears = value >= self.open_at, value <= self.close_at
        else:
            opens, clears = value <= self.open_at, value >= self.close_at
        if not state.alarm and opens:
            return DetectorState(True, observed, observed), AlarmChange.OPENED
        if state.alarm and clears:
            return DetectorState(False, 0.0, observed), AlarmChange.CLEARED
        return DetectorState(state.alarm, state.since, observed), None

    def restore(self, alarm: DetectorState, model: bytes | None = None) -> DetectorState:
        """The state to step from, given what was stored: the alarm (fixed limits learn nothing)."""
        return alarm
