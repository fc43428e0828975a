"""Threshold detection opens one alarm per excursion and ignores replays."""

from __future__ import annotations

import pytest

from classifiers import AlarmChange, DetectorState, ThresholdDetector


def run(detector: ThresholdDetector, values: list[float]) -> list[AlarmChange | None]:
    state = DetectorState()
    changes = []
    for t, value in enumerate(values, start=1):
        state, change = detector.step(state, value, float(t))
        changes.append(change)
    return changes


OPEN, CLEAR = AlarmChange.OPENED, AlarmChange.CLEARED


@pytest.mark.parametrize(
    ("direction", "open_at", "close_at", "values", "expected"),
    [
        ("above", 30, 20, [10, 25, 31, 29, 31, 25, 19, 10], [None, None, OPEN, None, None, None, CLEAR, None]),
        # hovering at the threshold raises one alarm, not a burst
        ("above", 30, 20, [30, 29.9, 30.1, 29.9, 30.2], [OPEN, None, None, None, None]),
        ("below", 1.5, 2.5, [3.0, 1.4, 2.0, 1.0, 2.6, 1.5], [None, OPEN, None, None, CLEAR, OPEN]),
        ("above", 30, 20, [], []),
    ],
)
def test_hysteresis(direction, open_at, close_at, values, expected):
    assert run(ThresholdDetector(open_at, close_at, direction), values) == expected


def test_a_replayed_reading_is_a_no_op():
    """At-least-once delivery: a reading not newer than the last applied changes nothing."""
    detector = ThresholdDetector(30, 20)
    state, change = detector.step(DetectorState(), 50, 100.0)
    assert change is AlarmChange.OPENED
    again, change = detector.step(state, 50, 100.0)
    assert change is None and again is state
    older, change = detector.step(state, 0, 99.0)
    assert change is None and older is state


@pytest.mark.parametrize(
    ("open_at", "close_at", "direction"), [(30, 30, "above"), (30, 40, "above"), (2, 1, "below"), (1, 2, "sideways")]
)
def test_inconsistent_thresholds_are_refused(open_at, close_at, direction):
    with pytest.raises(ValueError):
        ThresholdDetector(open_at, close_at, direction)
