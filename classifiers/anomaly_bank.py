"""Many sensors' adaptive states as numpy columns, stepped together.

:class:`AdaptiveBank` holds the :class:`~classifiers.anomaly.AdaptiveState` of
N sensors as arrays (one row per sensor). :func:`step_many` applies one
reading to every row at once with the same maths as
:meth:`AdaptiveDetector.step <classifiers.anomaly.AdaptiveDetector.step>`
(the same floating-point operations in the same order, so the results agree);
:func:`step_readings` applies a batch of readings for any of the rows, each
row's readings in time order. Both return a new bank and leave the old one as
it was.

Change codes in the results: ``OPENED_CODE`` (1), ``CLEARED_CODE`` (-1), 0 for none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from classifiers.anomaly import (
    ALARM_FLAG,
    DAY_S,
    LIMIT_FLAG,
    PATTERN_FLAG,
    STATE_MAGIC,
    STATE_VERSION,
    AdaptiveDetector,
    AdaptiveState,
    state_record,
)
from classifiers.sensors import AlarmChange, DetectorState

OPENED_CODE, CLEARED_CODE = 1, -1
SCALAR_BELOW = 24  # measured: a numpy round costs about as much as 24 readings through step


@dataclass(frozen=True, slots=True, eq=False)
class AdaptiveBank:
    """The states of N sensors as columns; ``level``, ``spread`` and ``weight`` are N x buckets.

    Compare banks through :meth:`states`; ``==`` on arrays would be ambiguous, so a bank is only equal to itself.
    """

    alarm: NDArray[np.bool_]
    since: NDArray[np.float64]
    last_observed: NDArray[np.float64]
    pattern_alarm: NDArray[np.bool_]
    limit_alarm: NDArray[np.bool_]
    streak: NDArray[np.int64]
    score: NDArray[np.float64]
    typical_spread: NDArray[np.float64]
    typical_weight: NDArray[np.float64]
    level: NDArray[np.float64]
    spread: NDArray[np.float64]
    weight: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.alarm)

    @property
    def buckets(self) -> int:
        return int(self.level.shape[1])

    @classmethod
    def fresh(cls, sensors: int, buckets: int) -> AdaptiveBank:
        """N sensors that have seen nothing (as ``AdaptiveState()``)."""
        return cls(
            alarm=np.zeros(sensors, bool),
            since=np.zeros(sensors),
            last_observed=np.full(sensors, -np.inf),
            pattern_alarm=np.zeros(sensors, bool),
            limit_alarm=np.zeros(sensors, bool),
            streak=np.zeros(sensors, np.int64),
            score=np.zeros(sensors),
            typical_spread=np.zeros(sensors),
            typical_weight=np.zeros(sensors),
            level=np.zeros((sensors, buckets)),
            spread=np.zeros((sensors, buckets)),
            weight=np.zeros((sensors, buckets)),
        )

    @classmethod
    def from_states(cls, states: Sequence[AdaptiveState], buckets: int) -> AdaptiveBank:
        """Stack states; a state learnt with another slot count starts its pattern afresh, as in ``step``."""
        n = len(states)
        profile = np.zeros((3, n, buckets))
        for i, state in enumerate(states):
            if len(state.level) == buckets:
                profile[:, i] = (state.level, state.spread, state.weight)
        return cls(
            alarm=np.fromiter((s.alarm for s in states), bool, n),
            since=np.fromiter((s.since for s in states), np.float64, n),
            last_observed=np.fromiter((s.last_observed for s in states), np.float64, n),
            pattern_alarm=np.fromiter((s.pattern_alarm for s in states), bool, n),
            limit_alarm=np.fromiter((s.limit_alarm for s in states), bool, n),
            streak=np.fromiter((s.streak for s in states), np.int64, n),
            score=np.fromiter((s.score for s in states), np.float64, n),
            typical_spread=np.fromiter((s.typical_spread for s in states), np.float64, n),
            typical_weight=np.fromiter((s.typical_weight for s in states), np.float64, n),
            level=profile[0],
            spread=profile[1],
            weight=profile[2],
        )

    def states(self) -> list[AdaptiveState]:
        """One :class:`AdaptiveState` per row (a row that learnt nothing keeps empty slot tuples)."""
        columns = zip(
            self.alarm.tolist(),
            self.since.tolist(),
            self.last_observed.tolist(),
            self.pattern_alarm.tolist(),
            self.limit_alarm.tolist(),
            self.streak.tolist(),
            self.score.tolist(),
            self.typical_spread.tolist(),
            self.typical_weight.tolist(),
            self.level.tolist(),
            self.spread.tolist(),
            self.weight.tolist(),
            strict=True,
        )
        result = []
        for (
            alarm,
            since,
            last,
            pattern,
            limit,
            streak,
            score,
            typical,
            typical_weight,
            level,
            spread,
            weight,
        ) in columns:
            learnt = any(weight)
            result.append(
                AdaptiveState(
                    alarm=alarm,
                    since=since,
                    last_observed=last,
                    pattern_alarm=pattern,
                    limit_alarm=limit,
                    streak=streak,
                    score=score,
                    typical_spread=typical,
                    typical_weight=typical_weight,
                    level=tuple(level) if learnt else (),
                    spread=tuple(spread) if learnt else (),
                    weight=tuple(weight) if learnt else (),
                )
            )
        return result

    @classmethod
    def from_bytes(cls, blobs: Sequence[bytes | None], buckets: int) -> AdaptiveBank:
        """Decode many :meth:`AdaptiveState.to_bytes` values at once; ``None`` is a sensor never seen.

        Same result as ``from_states([AdaptiveState.from_bytes(b) ...])`` without a Python object
        per sensor; raises ``ValueError`` on bytes that are not an adaptive state.
        """
        bank = cls.fresh(len(blobs), buckets)
        record = state_record(buckets)
        whole = [i for i, blob in enumerate(blobs) if blob is not None and len(blob) == record.itemsize]
        other = [i for i, blob in enumerate(blobs) if blob is not None and len(blob) != record.itemsize]
        if whole:
            parsed = np.frombuffer(b"".join(blobs[i] for i in whole), dtype=record)  # type: ignore[misc]
            if not (
                (parsed["magic"] == STATE_MAGIC).all()
                and (parsed["version"] == STATE_VERSION).all()
                and (parsed["buckets"] == buckets).all()
            ):
                raise ValueError(f"not adaptive states of version {STATE_VERSION} with {buckets} slots")
            rows = np.asarray(whole, dtype=np.intp)
            flags = parsed["flags"]
            bank.alarm[rows] = flags & ALARM_FLAG != 0
            bank.pattern_alarm[rows] = flags & PATTERN_FLAG != 0
            bank.limit_alarm[rows] = flags & LIMIT_FLAG != 0
            for name in ("since", "last_observed", "score", "typical_spread", "typical_weight", "streak"):
                getattr(bank, name)[rows] = parsed[name]
            bank.level[rows], bank.spread[rows], bank.weight[rows] = parsed["profile"].transpose(1, 0, 2)
        if other:
            rows = np.asarray(other, dtype=np.intp)
            decoded = [AdaptiveState.from_bytes(blobs[i]) for i in other]  # type: ignore[arg-type]
            bank._put(rows, cls.from_states(decoded, buckets))
        return bank

    @classmethod
    def restore(cls, detector: AdaptiveDetector, stored: Sequence[tuple[DetectorState, bytes | None]]) -> AdaptiveBank:
        """The states to step from, given what was stored per sensor: :meth:`AdaptiveDetector.restore` for each row.

        A row with a model is that model; one without keeps the stored alarm (a sensor switched from a threshold
        kind) and learns afresh. When any model is unreadable the rows are restored one by one, so that row is
        relearnt with ``restore``'s warning and the others keep theirs.
        """
        try:
            bank = cls.from_bytes([model for _, model in stored], detector.buckets)
        except ValueError:
            return cls.from_states([detector.restore(alarm, model) for alarm, model in stored], detector.buckets)
        fresh = [row for row, (_, model) in enumerate(stored) if model is None]
        if fresh:
            rows = np.asarray(fresh, dtype=np.intp)
            bank.alarm[rows] = [stored[row][0].alarm for row in fresh]
            bank.since[rows] = [stored[row][0].since for row in fresh]
            bank.last_observed[rows] = [stored[row][0].last_observed for row in fresh]
        return bank

    def to_bytes(self) -> list[bytes]:
        """Each row as :meth:`AdaptiveState.to_bytes` would write it (no slots while nothing is learnt)."""
        learnt = self.weight.any(axis=1)
        result: list[bytes] = []
        for record, rows in ((state_record(self.buckets), learnt), (state_record(0), ~learnt)):
            packed = np.zeros(int(rows.sum()), dtype=record)
            packed["magic"], packed["version"] = STATE_MAGIC, STATE_VERSION
            packed["buckets"] = self.buckets if "profile" in record.names else 0
            packed["flags"] = (
                np.where(self.alarm[rows], ALARM_FLAG, 0)
                | np.where(self.pattern_alarm[rows], PATTERN_FLAG, 0)
                | np.where(self.limit_alarm[rows], LIMIT_FLAG, 0)
            )
            for name in ("since", "last_observed", "score", "typical_spread", "typical_weight", "streak"):
                packed[name] = getattr(self, name)[rows]
            if "profile" in record.names:
                packed["profile"] = np.stack([self.level[rows], self.spread[rows], self.weight[rows]], axis=1)
            raw, size = packed.tobytes(), record.itemsize
            result.extend(raw[k * size : (k + 1) * size] for k in range(len(packed)))
        order = np.r_[np.flatnonzero(learnt), np.flatnonzero(~learnt)]
        encoded: list[bytes] = [b""] * len(self)
        for row, blob in zip(order.tolist(), result, strict=True):
            encoded[row] = blob
        return encoded

    def take(self, rows: NDArray[np.intp]) -> AdaptiveBank:
        """The given rows, as a new bank."""
        return AdaptiveBank(*(getattr(self, f.name)[rows] for f in fields(self)))

    def _put(self, rows: NDArray[np.intp], part: AdaptiveBank) -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(part, f.name)

    def _copy(self) -> AdaptiveBank:
        return AdaptiveBank(*(getattr(self, f.name).copy() for f in fields(self)))


class BankStep(NamedTuple):
    """A stepped bank, and per reading: its change code and whether it was applied (not stale)."""

    bank: AdaptiveBank
    changes: NDArray[np.int8]
    applied: NDArray[np.bool_]


def alarm_change(code: int) -> AlarmChange | None:
    """The :class:`AlarmChange` a change code stands for."""
    return AlarmChange.OPENED if code == OPENED_CODE else AlarmChange.CLEARED if code == CLEARED_CODE else None


def step_many(
    detector: AdaptiveDetector,
    bank: AdaptiveBank,
    values: ArrayLike,
    observed: ArrayLike,
    utc_offsets: ArrayLike | None = None,
) -> BankStep:
    """Apply reading i to row i of the bank, for every row at once; see ``AdaptiveDetector.step``."""
    x = np.asarray(values, dtype=np.float64)
    t = np.asarray(observed, dtype=np.float64)
    n = len(bank)
    if x.shape != (n,) or t.shape != (n,):
        raise ValueError(f"need one value and one time per row of the bank ({n})")
    if bank.buckets != detector.buckets:
        raise ValueError(f"bank has {bank.buckets} slots, detector {detector.buckets}")
    offset = detector.utc_offset_s if utc_offsets is None else np.asarray(utc_offsets, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _advance(detector, bank, x, t, offset)


def _advance(detector: AdaptiveDetector, bank: AdaptiveBank, x: NDArray, t: NDArray, offset: ArrayLike) -> BankStep:
    d = detector
    applied = (t > bank.last_observed) & np.isfinite(x)
    first = bank.last_observed == -np.inf
    gap = np.where(first, 0.0, np.minimum(t - bank.last_observed, d.gap_s))
    local = np.where(applied, t + offset, 0.0)
    h = np.minimum(local % DAY_S // d.width_s, d.buckets - 1).astype(np.intp)
    rows = np.arange(len(x))
    slot_weight, slot_level, slot_spread = bank.weight[rows, h], bank.level[rows, h], bank.spread[rows, h]
    warmed = (slot_weight >= d.warm_weight) & (slot_weight > 0.0)
    scale = np.maximum(np.maximum(slot_spread, d.floor_share * bank.typical_spread), d.min_scale)

    z = np.minimum(np.maximum((x - slot_level) / scale, -d.score_cap), d.score_cap)
    score = np.where(warmed, (1.0 - d.smoothing) * bank.score + d.smoothing * z, 0.0)
    evidence = score if d.direction == "above" else -score if d.direction == "below" else np.abs(score)
    towards_open = np.where(evidence >= d.k_open, bank.streak + 1, 0)
    towards_close = np.where(evidence <= d.k_close, bank.streak + 1, 0)
    opens = ~bank.pattern_alarm & (towards_open >= d.open_after)
    clears = bank.pattern_alarm & (towards_close >= d.close_after)
    streak = np.where(bank.pattern_alarm, towards_close, towards_open)
    streak = np.where(warmed & ~(opens | clears), streak, 0)
    pattern_alarm = np.where(warmed, (bank.pattern_alarm & ~clears) | opens, bank.pattern_alarm)

    limit_alarm = bank.limit_alarm
    if d.limits is not None:
        if d.limits.direction == "above":
            over, back = x >= d.limits.open_at, x <= d.limits.close_at
        else:
            over, back = x <= d.limits.open_at, x >= d.limits.close_at
        limit_alarm = (limit_alarm & ~back) | (~limit_alarm & over)
    alarm = pattern_alarm | limit_alarm
    opened, cleared = alarm & ~bank.alarm, bank.alarm & ~alarm
    since = np.where(opened, t, np.where(cleared, 0.0, bank.since))

    rate = np.where(alarm, d.learn_in_alarm, 1.0)
    has_level = slot_weight > 0.0
    residual = x - slot_level
    bound = d.learn_clip * scale
    residual = np.where(warmed, np.minimum(np.maximum(residual, -bound), bound), residual)
    target = np.where(has_level, slot_level + residual, x)
    deviation = np.where(has_level, np.abs(residual), 0.0)
    day_share = rate * gap / (d.day_memory_s + gap)
    typical_weight = np.where(has_level, (1.0 - day_share) * bank.typical_weight + day_share, bank.typical_weight)
    typical_spread = np.where(
        has_level & (typical_weight > 0.0),
        bank.typical_spread + day_share / typical_weight * (deviation - bank.typical_spread),
        bank.typical_spread,
    )
    share = rate * gap / (d.slot_memory_s + gap)
    new_weight = (1.0 - share) * slot_weight + share
    learns = applied & (new_weight > 0.0)
    gain = share / new_weight
    level, spread, weight = bank.level.copy(), bank.spread.copy(), bank.weight.copy()
    at = (rows[learns], h[learns])
    level[at] = (slot_level + gain * (target - slot_level))[learns]
    spread[at] = (slot_spread + gain * (deviation - slot_spread))[learns]
    weight[at] = new_weight[learns]

    def keep(new: NDArray, old: NDArray) -> NDArray:
        return np.where(applied, new, old)

    stepped = AdaptiveBank(
        alarm=keep(alarm, bank.alarm),
        since=keep(since, bank.since),
        last_observed=keep(t, bank.last_observed),
        pattern_alarm=keep(pattern_alarm, bank.pattern_alarm),
        limit_alarm=keep(limit_alarm, bank.limit_alarm),
        streak=keep(streak, bank.streak),
        score=keep(score, bank.score),
        typical_spread=keep(typical_spread, bank.typical_spread),
        typical_weight=keep(typical_weight, bank.typical_weight),
        level=level,
        spread=spread,
        weight=weight,
    )
    changes = np.where(applied & opened, OPENED_CODE, np.where(applied & cleared, CLEARED_CODE, 0)).astype(np.int8)
    return BankStep(stepped, changes, applied)


def step_readings(
    detector: AdaptiveDetector,
    bank: AdaptiveBank,
    rows: ArrayLike,
    values: ArrayLike,
    observed: ArrayLike,
    utc_offsets: ArrayLike | None = None,
    *,
    scalar_below: int = SCALAR_BELOW,
) -> BankStep:
    """Apply a batch of readings; reading i is for bank row ``rows[i]``.

    Each row's readings are applied in time order (equal times in input
    order, so the later one is stale). Readings of different rows are stepped
    together, one round per reading of the busiest row; once a round has
    fewer than ``scalar_below`` readings (the tail of a few busy rows), the
    rest goes through ``AdaptiveDetector.step``, which gives the same result
    without a numpy call per reading. Changes and ``applied`` come back in
    input order.
    """
    row_of = np.asarray(rows, dtype=np.intp)
    x = np.asarray(values, dtype=np.float64)
    t = np.asarray(observed, dtype=np.float64)
    if not row_of.shape == x.shape == t.shape or row_of.ndim != 1:
        raise ValueError("rows, values and observed must be one-dimensional and of one length")
    offsets = None if utc_offsets is None else np.broadcast_to(np.asarray(utc_offsets, np.float64), t.shape)
    changes = np.zeros(len(x), np.int8)
    applied = np.zeros(len(x), bool)
    result = bank._copy()
    if len(x) == 0:
        return BankStep(result, changes, applied)
    order = np.lexsort((t, row_of))  # stable: equal times keep their input order
    sorted_rows = row_of[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    for r in range(int(rank.max()) + 1):
        picked = order[rank == r]
        if len(picked) < scalar_below:  # rounds only shrink: step what is left reading by reading
            _step_rest(detector, result, order[rank >= r], row_of, x, t, offsets, changes, applied)
            break
        part_rows = row_of[picked]
        part = step_many(
            detector,
            result.take(part_rows),
            x[picked],
            t[picked],
            None if offsets is None else offsets[picked],
        )
        result._put(part_rows, part.bank)
        changes[picked] = part.changes
        applied[picked] = part.applied
    return BankStep(result, changes, applied)


def _step_rest(
    detector: AdaptiveDetector,
    bank: AdaptiveBank,
    readings: NDArray[np.intp],
    row_of: NDArray[np.intp],
    x: NDArray[np.float64],
    t: NDArray[np.float64],
    offsets: NDArray[np.float64] | None,
    changes: NDArray[np.int8],
    applied: NDArray[np.bool_],
) -> None:
    """Step ``readings`` (indices, each row's in time order) one by one into ``bank``, in place."""
    rows = np.unique(row_of[readings])
    states = dict(zip(rows.tolist(), bank.take(rows).states(), strict=True))
    codes = {AlarmChange.OPENED: OPENED_CODE, AlarmChange.CLEARED: CLEARED_CODE, None: 0}
    for i in readings.tolist():
        row = int(row_of[i])
        offset = None if offsets is None else float(offsets[i])
        state, change = detector.step(states[row], float(x[i]), float(t[i]), offset)
        applied[i] = state is not states[row]
        changes[i] = codes[change]
        states[row] = state
    bank._put(rows, AdaptiveBank.from_states([states[row] for row in rows.tolist()], bank.buckets))
