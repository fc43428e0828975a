"""Adaptive alarm detection: each sensor learns its own normal daily pattern.

The static :class:`~classifiers.sensors.ThresholdDetector` needs a number per
sensor kind; this detector learns, per sensor, what is normal at each time of
day and alarms on readings far from it. Like the threshold detector it is a
pure step function ``(state, value, observed) -> (state, change)``: the caller
keeps the state (``AdaptiveState.to_bytes`` for Redis), time is a parameter,
and a reading not newer than the last applied is a no-op.

The model, per sensor:

* The day is cut into ``buckets`` slots of local time (24: hours), shifted by
  ``utc_offset_s``. Each slot keeps a **level** (EWMA of the readings) and a
  **spread** (EWMA of the absolute residual, a mean-absolute-deviation-like
  scale), both bias-corrected by the slot's **weight** so the first readings
  are a plain running mean, not a pull towards zero.
* A reading's share of the memory is the time it stands for (since the
  previous reading, at most ``max_gap_s``), so a sensor learns the same in
  days whether it reports every minute or every hour: the last
  ``memory_days`` days of a slot's history make up about 1 - 1/e (63%) of
  its estimate.
* The residual ``(x - level) / scale`` is capped at ``score_cap`` and smoothed
  (EWMA with ``smoothing``) into the **score**; ``scale`` is the slot's spread,
  but at least ``floor_share`` of the sensor's typical spread over the whole
  day and at least ``min_scale``, so a slot that happened to be flat does not
  make every wobble infinite.
* Hysteresis: the alarm opens when the score is at least ``k_open`` for
  ``open_after`` readings in a row and clears when it is at most ``k_close``
  for ``close_after`` readings in a row: one event per excursion.
* Learning is robust: the residual a slot learns from is clipped to
  ``learn_clip`` scales, and while the alarm is open the sensor learns at
  ``learn_in_alarm`` of the usual rate, so a long anomaly is not absorbed
  into "normal" (but a permanent change eventually is).
* No alarm before a slot has ``warmup_days`` of history.

With ``limits`` (a :class:`ThresholdDetector`) the same detector is the
"both" kind: the alarm is open while either the learnt pattern or the static
limits say so, and clears when both are back.

The defaults were chosen by measurement on the Numenta Anomaly Benchmark
series in ``tests/data/test_nab.py`` (realKnownCause and realTraffic), not
fitted to one series; see the report printed by that test.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from classifiers.sensors import AlarmChange, DetectorState, ThresholdDetector

log = logging.getLogger(__name__)

DAY_S = 86400.0
Direction = Literal["both", "above", "below"]
DetectorMode = Literal["threshold", "adaptive", "both"]

STATE_MAGIC = b"AD"
STATE_VERSION = 1
STATE_HEADER = struct.Struct("<2sBBH5dI")  # magic, version, flags, buckets, 5 floats, streak
ALARM_FLAG, PATTERN_FLAG, LIMIT_FLAG = 1, 2, 4


def state_record(buckets: int) -> np.dtype:
    """The layout of :meth:`AdaptiveState.to_bytes` with ``buckets`` slots, as a numpy record."""
    fields = [
        ("magic", "S2"),
        ("version", "u1"),
        ("flags", "u1"),
        ("buckets", "<u2"),
        ("since", "<f8"),
        ("last_observed", "<f8"),
        ("score", "<f8"),
        ("typical_spread", "<f8"),
        ("typical_weight", "<f8"),
        ("streak", "<u4"),
    ]
    if buckets:
        fields.append(("profile", "<f8", (3, buckets)))  # level, spread, weight
    return np.dtype(fields)


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    """What the adaptive detector remembers about one sensor.

    ``alarm``, ``since`` and ``last_observed`` mean what they mean in
    :class:`~classifiers.sensors.DetectorState`. ``level``, ``spread`` and
    ``weight`` hold one value per time-of-day slot (empty: nothing learnt yet);
    ``score`` is the smoothed, signed residual in scales; ``streak`` counts
    readings in a row that met the open (or, in alarm, the close) condition.
    """

    alarm: bool = False
    since: float = 0.0
    last_observed: float = float("-inf")
    pattern_alarm: bool = False
    limit_alarm: bool = False
    streak: int = 0
    score: float = 0.0
    typical_spread: float = 0.0
    typical_weight: float = 0.0
    level: tuple[float, ...] = ()
    spread: tuple[float, ...] = ()
    weight: tuple[float, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialise to a compact little-endian record (626 bytes with 24 slots).

        Layout (version 1): ``b"AD"``, version (u8), flags (u8: 1 alarm,
        2 pattern alarm, 4 limit alarm), slot count B (u16), then float64
        ``since, last_observed, score, typical_spread, typical_weight``,
        ``streak`` (u32), then B float64 each of ``level``, ``spread``, ``weight``.
        """
        buckets = len(self.level)
        flags = (ALARM_FLAG if self.alarm else 0) | (PATTERN_FLAG if self.pattern_alarm else 0)
        flags |= LIMIT_FLAG if self.limit_alarm else 0
        header = STATE_HEADER.pack(
            STATE_MAGIC,
            STATE_VERSION,
            flags,
            buckets,
            self.since,
            self.last_observed,
            self.score,
            self.typical_spread,
            self.typical_weight,
            self.streak,
        )
        return header + struct.pack(f"<{3 * buckets}d", *self.level, *self.spread, *self.weight)

    @classmethod
    def from_bytes(cls, data: bytes) -> AdaptiveState:
        """Read what :meth:`to_bytes` wrote; raises ``ValueError`` on anything else."""
        if len(data) < STATE_HEADER.size:
            raise ValueError(f"adaptive state too short: {len(data)} bytes")
        magic, version, flags, buckets, since, last, score, spread, weight, streak = STATE_HEADER.unpack_from(data)
        if magic != STATE_MAGIC or version != STATE_VERSION:
            raise ValueError(f"not an adaptive state of version {STATE_VERSION}: {magic!r} v{version}")
        if len(data) != STATE_HEADER.size + 24 * buckets:
            raise ValueError(f"adaptive state of {buckets} slots must be {STATE_HEADER.size + 24 * buckets} bytes")
        values = struct.unpack_from(f"<{3 * buckets}d", data, STATE_HEADER.size)
        return cls(
            alarm=bool(flags & ALARM_FLAG),
            since=since,
            last_observed=last,
            pattern_alarm=bool(flags & PATTERN_FLAG),
            limit_alarm=bool(flags & LIMIT_FLAG),
            streak=streak,
            score=score,
            typical_spread=spread,
            typical_weight=weight,
            level=values[:buckets],
            spread=values[buckets : 2 * buckets],
            weight=values[2 * buckets :],
        )


@dataclass(frozen=True, slots=True)
class AdaptiveDetector:
    """Learns each sensor's daily pattern and alarms, with hysteresis, on readings far from it."""

    buckets: int = 24
    utc_offset_s: float = 0.0
    memory_days: float = 7.0
    warmup_days: float = 3.0
    k_open: float = 4.5
    open_after: int = 2
    k_close: float = 2.5
    close_after: int = 3
    smoothing: float = 0.5
    score_cap: float = 10.0
    learn_clip: float = 4.0
    learn_in_alarm: float = 0.1
    floor_share: float = 0.25
    min_scale: float = 1e-9
    max_gap_s: float | None = None
    direction: Direction = "both"
    limits: ThresholdDetector | None = None
    # derived once in __post_init__
    width_s: float = field(init=False, repr=False, compare=False)
    slot_memory_s: float = field(init=False, repr=False, compare=False)
    day_memory_s: float = field(init=False, repr=False, compare=False)
    gap_s: float = field(init=False, repr=False, compare=False)
    warm_weight: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.buckets <= 1440:
            problems.append("buckets must be 1..1440")
        if not (self.memory_days > 0 and self.warmup_days >= 0):
            problems.append("memory_days must be positive and warmup_days not negative")
        if not 0 < self.k_close < self.k_open < self.score_cap:
            problems.append("need 0 < k_close < k_open < score_cap")
        if self.open_after < 1 or self.close_after < 1:
            problems.append("open_after and close_after must be at least 1")
        if not 0 < self.smoothing <= 1 or not 0 <= self.learn_in_alarm <= 1:
            problems.append("smoothing must be in (0, 1] and learn_in_alarm in [0, 1]")
        if not (self.learn_clip > 0 and self.floor_share >= 0 and self.min_scale > 0):
            problems.append("learn_clip and min_scale must be positive, floor_share not negative")
        if self.max_gap_s is not None and not self.max_gap_s > 0:
            problems.append("max_gap_s must be positive")
        if self.direction not in ("both", "above", "below"):
            problems.append(f"direction must be 'both', 'above' or 'below', not {self.direction!r}")
        if problems:
            raise ValueError("; ".join(problems))
        width = DAY_S / self.buckets
        object.__setattr__(self, "width_s", width)
        # A slot collects one slot-width of reading time per day, so its memory in seconds of reading
        # time is memory_days slot-widths; the whole-day typical spread collects a full day per day.
        object.__setattr__(self, "slot_memory_s", self.memory_days * width)
        object.__setattr__(self, "day_memory_s", self.memory_days * DAY_S)
        object.__setattr__(self, "gap_s", width if self.max_gap_s is None else self.max_gap_s)
        object.__setattr__(self, "warm_weight", 1.0 - math.exp(-self.warmup_days / self.memory_days))

    method = "sensor_pattern"  # how an incident it opens was classified

    def restore(self, alarm: DetectorState, model: bytes | None = None) -> AdaptiveState:
        """The state to step from, given what was stored: the learnt model, else a fresh one keeping the alarm.

        An unreadable model (another version, damaged) is relearnt rather than
        stopping the sensor's stream.
        """
        if model is not None:
            try:
                return AdaptiveState.from_bytes(model)
            except ValueError as exc:
                log.warning("unreadable adaptive model (%s); relearning the sensor's pattern", exc)
        return AdaptiveState(alarm=alarm.alarm, since=alarm.since, last_observed=alarm.last_observed)

    def slot(self, observed: float, utc_offset_s: float | None = None) -> int:
        """The time-of-day slot of an epoch time, in local time."""
        offset = self.utc_offset_s if utc_offset_s is None else utc_offset_s
        return min(int((observed + offset) % DAY_S // self.width_s), self.buckets - 1)

    def step(
        self, state: AdaptiveState, value: float, observed: float, utc_offset_s: float | None = None
    ) -> tuple[AdaptiveState, AlarmChange | None]:
        """Apply one reading; returns the same state object when the reading is not applied.

        A reading not newer than the last applied (a redelivery) or not finite
        is ignored. ``utc_offset_s`` overrides the detector's offset for this
        reading (a caller that follows daylight saving time passes it).
        """
        if not observed > state.last_observed or not math.isfinite(value):
            return state, None
        buckets = self.buckets
        level, spread, weight = state.level, state.spread, state.weight
        if len(level) != buckets:  # nothing learnt yet, or learnt with another slot count: learn afresh
            level = spread = weight = (0.0,) * buckets
        first = state.last_observed == float("-inf")
        gap = 0.0 if first else min(observed - state.last_observed, self.gap_s)
        h = self.slot(observed, utc_offset_s)
        slot_weight, slot_level, slot_spread = weight[h], level[h], spread[h]
        warmed = slot_weight >= self.warm_weight and slot_weight > 0.0
        scale = max(slot_spread, self.floor_share * state.typical_spread, self.min_scale)

        score, streak, pattern_alarm = state.score, state.streak, state.pattern_alarm
        if warmed:
            z = min(max((value - slot_level) / scale, -self.score_cap), self.score_cap)
            score = (1.0 - self.smoothing) * score + self.smoothing * z
            if self.direction == "above":
                evidence = score
            elif self.direction == "below":
                evidence = -score
            else:
                evidence = abs(score)
            if not pattern_alarm:
                streak = streak + 1 if evidence >= self.k_open else 0
                if streak >= self.open_after:
                    pattern_alarm, streak = True, 0
            else:
                streak = streak + 1 if evidence <= self.k_close else 0
                if streak >= self.close_after:
                    pattern_alarm, streak = False, 0
        else:
            score, streak = 0.0, 0

        limit_alarm = state.limit_alarm
        if self.limits is not None:
            limit_alarm = self.limits.step(DetectorState(limit_alarm), value, observed)[0].alarm
        alarm = pattern_alarm or limit_alarm
        change = None
        since = state.since
        if alarm and not state.alarm:
            change, since = AlarmChange.OPENED, observed
        elif state.alarm and not alarm:
            change, since = AlarmChange.CLEARED, 0.0

        # Learn: the reading stands for `gap` seconds of the slot's history, less while in alarm.
        rate = self.learn_in_alarm if alarm else 1.0
        typical_spread, typical_weight = state.typical_spread, state.typical_weight
        if slot_weight > 0.0:
            residual = value - slot_level
            if warmed:
                bound = self.learn_clip * scale
                residual = min(max(residual, -bound), bound)
            target, deviation = slot_level + residual, abs(residual)
            day_share = rate * gap / (self.day_memory_s + gap)
            typical_weight = (1.0 - day_share) * typical_weight + day_share
            if typical_weight > 0.0:
                typical_spread += day_share / typical_weight * (deviation - typical_spread)
        else:
            target, deviation = value, 0.0
        share = rate * gap / (self.slot_memory_s + gap)
        new_weight = (1.0 - share) * slot_weight + share
        if new_weight > 0.0:
            gain = share / new_weight
            level = _replace(level, h, slot_level + gain * (target - slot_level))
            spread = _replace(spread, h, slot_spread + gain * (deviation - slot_spread))
            weight = _replace(weight, h, new_weight)
        elif len(state.level) != buckets:
            level = spread = weight = ()  # still nothing learnt
        new_state = AdaptiveState(
            alarm=alarm,
            since=since,
            last_observed=observed,
            pattern_alarm=pattern_alarm,
            limit_alarm=limit_alarm,
            streak=streak,
            score=score,
            typical_spread=typical_spread,
            typical_weight=typical_weight,
            level=level,
            spread=spread,
            weight=weight,
        )
        return new_state, change


def detector_for(
    mode: DetectorMode, limits: ThresholdDetector | None = None, **settings: Any
) -> ThresholdDetector | AdaptiveDetector:
    """The detector a sensor kind asks for with ``detector: threshold | adaptive | both``.

    ``threshold`` is the static ``limits``; ``adaptive`` the learnt pattern
    alone (``settings`` are :class:`AdaptiveDetector` fields); ``both`` the
    learnt pattern with the static limits.
    """
    if mode == "threshold":
        if limits is None:
            raise ValueError("a threshold detector needs limits")
        return limits
    if mode == "adaptive":
        return AdaptiveDetector(**settings)
    if mode == "both":
        if limits is None:
            raise ValueError("detector 'both' needs limits")
        return AdaptiveDetector(limits=limits, **settings)
    raise ValueError(f"detector must be 'threshold', 'adaptive' or 'both', not {mode!r}")


def _replace(values: tuple[float, ...], index: int, value: float) -> tuple[float, ...]:
    return values[:index] + (value,) + values[index + 1 :]
