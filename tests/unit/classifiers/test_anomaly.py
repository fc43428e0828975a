"""The adaptive detector learns each sensor's daily pattern and alarms once per excursion from it."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pytest

from classifiers import (
    AdaptiveBank,
    AdaptiveDetector,
    AdaptiveState,
    AlarmChange,
    DetectorState,
    ThresholdDetector,
    alarm_change,
    detector_for,
    step_many,
    step_readings,
)

OPEN, CLEAR = AlarmChange.OPENED, AlarmChange.CLEARED
HOUR, DAY = 3600.0, 86400.0
EVERY = 600.0  # one reading every 10 minutes
START = 1_700_006_400.0  # 2023-11-15 00:00 UTC, a midnight


def quiet_days(days: int, rng: random.Random, level: float = 50.0, noise: float = 1.0) -> list[float]:
    """Readings of a sensor with no daily cycle, one every 10 minutes."""
    return [level + rng.gauss(0, noise) for _ in range(int(days * DAY / EVERY))]


def changes(detector: AdaptiveDetector, values: Sequence[float], start: float = START) -> list[tuple[int, AlarmChange]]:
    """(reading index, change) for every change, stepping from a fresh state."""
    state, found = AdaptiveState(), []
    for i, value in enumerate(values):
        state, change = detector.step(state, value, start + i * EVERY)
        if change is not None:
            found.append((i, change))
    return found


@pytest.mark.parametrize(
    ("direction", "excursion", "expected"),
    [
        ("both", [80.0] * 3, [OPEN, CLEAR]),
        # wildly varying but always far from normal: one alarm for the whole excursion, not a burst
        ("both", [60.0, 56.0, 90.0, 57.0, 58.0, 400.0, 56.0] * 6, [OPEN, CLEAR]),
        ("both", [80.0] * 3 + [50.0] * 12 + [80.0] * 3, [OPEN, CLEAR, OPEN, CLEAR]),
        # one wild reading alone is not an excursion
        ("both", [500.0], []),
        ("both", [20.0] * 3, [OPEN, CLEAR]),
        ("above", [20.0] * 3, []),
        ("below", [20.0] * 3, [OPEN, CLEAR]),
        ("below", [80.0] * 3, []),
    ],
)
def test_hysteresis_gives_one_alarm_per_excursion(direction, excursion, expected):
    """After warm-up, each excursion opens one alarm and clears it once readings are normal again."""
    rng = random.Random(1)
    values = quiet_days(4, rng) + excursion + quiet_days(1, rng)
    found = changes(AdaptiveDetector(direction=direction), values)
    assert [change for _, change in found] == expected
    warm = int(4 * DAY / EVERY)
    assert all(index >= warm for index, _ in found)


def test_nothing_alarms_during_warm_up():
    """A slot needs warmup_days of history before it can alarm; the static limits need none."""
    values = [50.0, 51.0, 49.0, 500.0, 500.0, 500.0, 50.0]
    assert changes(AdaptiveDetector(), values) == []
    both = AdaptiveDetector(limits=ThresholdDetector(open_at=100.0, close_at=80.0))
    assert changes(both, values) == [(3, OPEN), (6, CLEAR)]


def daily_peak(days: int, rng: random.Random, utc_offset_s: float = 0.0) -> list[float]:
    """50 all day, 150 from 08:00 to 10:00 local time (a rush hour), with noise."""
    values = []
    for i in range(int(days * DAY / EVERY)):
        local_hour = ((START + i * EVERY + utc_offset_s) % DAY) / HOUR
        values.append((150.0 if 8 <= local_hour < 10 else 50.0) + rng.gauss(0, 1.0))
    return values


@pytest.mark.parametrize("utc_offset_s", [0.0, 2 * HOUR, -5 * HOUR])
def test_the_daily_peak_is_learnt_and_the_same_value_at_night_alarms(utc_offset_s):
    """After warm-up the regular morning peak does not alarm; the peak's value at 03:00 local does."""
    rng = random.Random(2)
    detector = AdaptiveDetector(utc_offset_s=utc_offset_s)
    values = daily_peak(10, rng, utc_offset_s)
    assert changes(detector, values) == []
    three_am = next(i for i in range(len(values)) if (START + i * EVERY + utc_offset_s) % DAY == 3 * HOUR)
    night = values + daily_peak(1, rng, utc_offset_s)
    first_3am = len(values) + three_am
    night[first_3am : first_3am + 4] = [150.0] * 4
    found = changes(detector, night)
    assert [change for _, change in found] == [OPEN, CLEAR]
    assert first_3am < found[0][0] <= first_3am + 2


def test_a_static_threshold_alarms_on_every_daily_peak():
    """The contrast: a fixed limit that catches the night-time excursion also fires every morning."""
    values = daily_peak(10, random.Random(2))
    detector = ThresholdDetector(open_at=100.0, close_at=80.0)
    state, opened = DetectorState(), 0
    for i, value in enumerate(values):
        state, change = detector.step(state, value, START + i * EVERY)
        opened += change is OPEN
    assert opened == 10


@pytest.mark.parametrize(
    ("observed", "offset", "buckets", "slot"),
    [
        (START, 0.0, 24, 0),
        (START + 8.5 * HOUR, 0.0, 24, 8),
        (START + 23 * HOUR + 3599, 0.0, 24, 23),
        (START + 6 * HOUR, 2 * HOUR, 24, 8),
        (START + 1 * HOUR, -2 * HOUR, 24, 23),
        (START + 13 * HOUR, 0.0, 12, 6),
        (START + 13 * HOUR, 5.5 * HOUR, 48, 37),
    ],
)
def test_slots_follow_local_time(observed, offset, buckets, slot):
    """Readings fall in the slot of their local time of day."""
    assert AdaptiveDetector(buckets=buckets, utc_offset_s=offset).slot(observed) == slot


def test_a_redelivered_or_older_reading_is_a_no_op():
    """At-least-once delivery: a reading not newer than the last applied (or not finite) changes nothing."""
    detector = AdaptiveDetector(limits=ThresholdDetector(open_at=100.0, close_at=80.0))
    state, change = detector.step(AdaptiveState(), 500.0, 100.0)
    assert change is OPEN
    for value, observed in [(500.0, 100.0), (0.0, 100.0), (0.0, 99.0), (math.nan, 200.0), (math.inf, 200.0)]:
        again, change = detector.step(state, value, observed)
        assert change is None and again is state


def test_a_long_anomaly_is_not_absorbed_but_a_permanent_change_is():
    """While in alarm the sensor learns slowly: a two-day shift stays one open alarm; a lasting one clears."""
    rng = random.Random(3)
    values = quiet_days(5, rng) + quiet_days(30, rng, level=60.0)
    shift = int(5 * DAY / EVERY)
    for learn_in_alarm, clears_after_days in [(0.1, (5.0, 30.0)), (1.0, (0.5, 5.0)), (0.0, None)]:
        found = changes(AdaptiveDetector(learn_in_alarm=learn_in_alarm), values)
        assert found[0] == (shift + 1, OPEN)
        if clears_after_days is None:
            assert len(found) == 1
        else:
            index, change = found[1]
            days = (index - shift) * EVERY / DAY
            assert change is CLEAR and clears_after_days[0] < days < clears_after_days[1], days
            assert len(found) == 2


def test_both_opens_on_either_and_clears_when_both_are_back():
    """The 'both' kind: static limits or the learnt pattern open the alarm; it clears once neither holds."""
    rng = random.Random(4)
    warm = quiet_days(4, rng)
    both = detector_for("both", ThresholdDetector(open_at=100.0, close_at=80.0))
    assert isinstance(both, AdaptiveDetector) and both.limits is not None
    # over the static limit, then back under close_at but still unusual, then normal: one alarm
    excursion = [120.0, 120.0, 90.0, 70.0, 70.0, 70.0, 70.0] + quiet_days(1, rng)
    found = changes(both, warm + excursion)
    assert [(i - len(warm), change) for i, change in found][0] == (0, OPEN)
    assert [change for _, change in found] == [OPEN, CLEAR]
    assert found[1][0] - len(warm) > 7


@pytest.mark.parametrize(
    ("mode", "limits", "kind"),
    [
        ("threshold", ThresholdDetector(30, 20), ThresholdDetector),
        ("adaptive", None, AdaptiveDetector),
        ("adaptive", ThresholdDetector(30, 20), AdaptiveDetector),
        ("both", ThresholdDetector(30, 20), AdaptiveDetector),
    ],
)
def test_detector_for_builds_the_kind_asked_for(mode, limits, kind):
    """A sensor kind's `detector: threshold | adaptive | both` maps to one detector object."""
    detector = detector_for(mode, limits, utc_offset_s=3600.0)
    assert isinstance(detector, kind)
    if mode == "adaptive":
        assert detector.limits is None and detector.utc_offset_s == 3600.0
    if mode == "both":
        assert detector.limits == limits


@pytest.mark.parametrize(("mode", "limits"), [("threshold", None), ("both", None), ("sometimes", None)])
def test_detector_for_refuses_what_it_cannot_build(mode, limits):
    """Static modes need limits, and there are only three modes."""
    with pytest.raises(ValueError):
        detector_for(mode, limits)


@pytest.mark.parametrize(
    "settings",
    [
        {"buckets": 0},
        {"memory_days": 0},
        {"k_open": 2.0, "k_close": 2.5},
        {"k_open": 12.0},
        {"open_after": 0},
        {"smoothing": 0.0},
        {"learn_in_alarm": 1.5},
        {"min_scale": 0.0},
        {"max_gap_s": -1.0},
        {"direction": "sideways"},
    ],
)
def test_inconsistent_settings_are_refused(settings):
    """Settings that could never alarm, or never clear, fail at construction."""
    with pytest.raises(ValueError):
        AdaptiveDetector(**settings)


def learnt_state() -> AdaptiveState:
    detector = AdaptiveDetector(limits=ThresholdDetector(open_at=100.0, close_at=80.0))
    state = AdaptiveState()
    for i, value in enumerate(daily_peak(5, random.Random(5)) + [500.0, 500.0]):
        state, _ = detector.step(state, value, START + i * EVERY)
    return state


@pytest.mark.parametrize("state", [AdaptiveState(), learnt_state()], ids=["fresh", "learnt-in-alarm"])
def test_state_round_trips_through_bytes(state):
    """to_bytes/from_bytes give back an equal state; 24 slots take 626 bytes."""
    data = state.to_bytes()
    assert AdaptiveState.from_bytes(data) == state
    assert len(data) == (626 if state.level else 50)


def test_a_learnt_state_round_trip_is_complete():
    """The state under test really has a learnt profile and an open alarm."""
    state = learnt_state()
    assert state.alarm and state.limit_alarm and len(state.level) == 24
    assert AdaptiveState.from_bytes(state.to_bytes()).since == state.since


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[:10],
        lambda data: data[:-8],
        lambda data: b"XX" + data[2:],
        lambda data: data[:2] + b"\x09" + data[3:],
        lambda data: data + b"\x00",
    ],
)
def test_other_bytes_are_refused(corrupt):
    """Truncated, padded or foreign bytes raise ValueError instead of becoming a wrong state."""
    with pytest.raises(ValueError):
        AdaptiveState.from_bytes(corrupt(learnt_state().to_bytes()))


def test_a_state_learnt_with_another_slot_count_is_relearnt():
    """Changing a kind's slot count restarts the pattern but keeps the alarm and the clock."""
    state = learnt_state()
    relearnt, change = AdaptiveDetector(buckets=12).step(state, 500.0, state.last_observed + EVERY)
    assert change is None and relearnt.alarm and relearnt.since == state.since
    assert len(relearnt.level) == 12


def random_readings(sensors: int, per_sensor: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled readings of sensors with daily cycles, excursions, replays and a gap."""
    rng = np.random.default_rng(seed)
    rows, values, times = [], [], []
    for sensor in range(sensors):
        steps = rng.choice([300.0, 600.0, 3600.0], size=per_sensor) * rng.integers(1, 3, size=per_sensor)
        steps[per_sensor // 2] = 3 * DAY
        t = START + rng.uniform(0, 3600) + np.cumsum(steps)
        cycle = 40 * np.sin(2 * np.pi * ((t % DAY) / DAY + sensor / sensors))
        x = 100 + cycle + rng.normal(0, 3, per_sensor)
        bursts = rng.random(per_sensor) < 0.02
        x[bursts | np.roll(bursts, 1) | np.roll(bursts, 2)] += rng.choice([-80.0, 80.0, 300.0])
        replay = rng.random(per_sensor) < 0.03
        replay[0] = False
        t = np.where(replay, np.roll(t, 1), t)  # redelivered: same time as the previous reading
        rows.append(np.full(per_sensor, sensor))
        values.append(x)
        times.append(t)
    order = rng.permutation(sensors * per_sensor)
    return np.concatenate(rows)[order], np.concatenate(values)[order], np.concatenate(times)[order]


@pytest.mark.parametrize(
    "detector",
    [
        AdaptiveDetector(warmup_days=1.0),
        AdaptiveDetector(warmup_days=1.0, direction="below", utc_offset_s=-4 * HOUR, buckets=48),
        AdaptiveDetector(warmup_days=0.5, limits=ThresholdDetector(open_at=260.0, close_at=200.0)),
    ],
    ids=["default", "below-48-slots", "both"],
)
@pytest.mark.parametrize("scalar_below", [0, 24, 10**9], ids=["numpy", "mixed", "step"])
def test_the_batch_api_agrees_exactly_with_step(detector, scalar_below):
    """step_readings (numpy over sensors, step for the tail) gives the same changes and states as step."""
    sensors, per_sensor = 30, 600
    rows, values, times = random_readings(sensors, per_sensor, seed=11)
    rows, values, times = rows[: -sensors * 100], values[: -sensors * 100], times[: -sensors * 100]
    fresh = AdaptiveBank.fresh(sensors, detector.buckets)
    batch = step_readings(detector, fresh, rows, values, times, scalar_below=scalar_below)

    states = [AdaptiveState()] * sensors
    expected_changes, expected_applied = [], []
    for i in np.lexsort((times, rows)):
        sensor = rows[i]
        new, change = detector.step(states[sensor], values[i], times[i])
        expected_applied.append((i, new is not states[sensor]))
        expected_changes.append((i, change))
        states[sensor] = new
    expected_changes.sort()
    expected_applied.sort()
    assert [alarm_change(code) for code in batch.changes] == [change for _, change in expected_changes]
    assert batch.applied.tolist() == [applied for _, applied in expected_applied]
    assert batch.bank.states() == states
    assert (batch.changes == 1).sum() >= sensors  # the excursions did alarm
    assert not batch.applied.all()  # and the replays were skipped


def test_step_many_leaves_the_old_bank_alone_and_skips_stale_rows():
    """One reading per row; the input bank is not modified; a stale row keeps its state."""
    detector = AdaptiveDetector(limits=ThresholdDetector(open_at=100.0, close_at=80.0))
    bank = AdaptiveBank.from_states([AdaptiveState(), learnt_state(), AdaptiveState(last_observed=START)], 24)
    before = bank.states()
    last = bank.last_observed[1]
    step = step_many(detector, bank, [500.0, 20.0, 50.0], [START, last + EVERY, START])
    assert bank.states() == before
    assert step.applied.tolist() == [True, True, False]
    assert [alarm_change(code) for code in step.changes] == [OPEN, None, None]
    assert step.bank.states()[2] == before[2]
    with pytest.raises(ValueError):
        step_many(detector, bank, [1.0], [START])


def test_a_bank_encodes_and_decodes_bytes_like_the_states_do():
    """AdaptiveBank.to_bytes/from_bytes write and read exactly what AdaptiveState.to_bytes/from_bytes do."""
    detector = AdaptiveDetector(warmup_days=0.5)
    rows, values, times = random_readings(6, 400, seed=12)
    stepped = step_readings(detector, AdaptiveBank.fresh(6, 24), rows, values, times).bank.states()
    states = [*stepped, AdaptiveState(), AdaptiveState(alarm=True, since=3.0, last_observed=4.0, limit_alarm=True)]
    blobs = AdaptiveBank.from_states(states, 24).to_bytes()
    assert blobs == [state.to_bytes() for state in states]
    assert AdaptiveBank.from_bytes([*blobs, None], 24).states() == [*states, AdaptiveState()]
    # a state learnt with 12 slots decodes into a 24-slot bank as "relearn", like step does
    twelve = step_readings(AdaptiveDetector(buckets=12), AdaptiveBank.fresh(1, 12), [0, 0], [1.0, 2.0], [5.0, 9.0])
    decoded = AdaptiveBank.from_bytes(twelve.bank.to_bytes(), 24).states()[0]
    assert decoded.last_observed == 9.0 and decoded.level == ()
    with pytest.raises(ValueError):
        AdaptiveBank.from_bytes([b"XX" + blobs[0][2:]], 24)
