"""How the long-running commands log: text or JSON lines, the ids of the record being handled, repeats held back.

Three things, each for an operator reading or collecting a worker's log:

* **Bound ids.** :func:`bound` puts a record's ids (report, incident, task, ...) in a context variable for as long
  as the code handling that record runs; every line logged meanwhile carries them in JSON. Leaving the block
  restores the ids that were bound before, so a line about the batch after a record never carries that record's
  ids (asyncio tasks copy the context, so concurrent handlers never see each other's).
* **JSON lines** (``--log-format json``, ``CITYLOOP_LOG_FORMAT=json``): :class:`JsonFormatter`, one object per
  line with ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the bound ids, and an exception as one
  ``exception`` string. The text format stays what it was (Faust's for the worker, ``asctime level name:
  message`` for the API and the connectors): a person at a terminal reads that.
* **Repeats held back** (:class:`RepeatThrottle`). With the broker away a worker wrote about 150 ERROR lines a
  second (the client libraries' connection errors, every retry): the first line of each kind passes, then its
  repeats are counted and, once per interval (``CITYLOOP_LOG_REPEAT_S``, 10 s), one line says how many there were.
  A kind is the logger and the message *template* (``"Unable connect to node %s"``), not the formatted text, so
  a retry counter or a changing address in the arguments does not make every line new.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: the ids a log line can carry, in the order JSON lines show them
FIELDS = ("report_id", "incident_id", "task_id", "event_id", "sensor_id", "unit_id", "record", "request_id")
_NO_IDS: dict[str, str] = {}
_ids: ContextVar[dict[str, str]] = ContextVar("cityloop_log_ids", default=_NO_IDS)  # replaced whole, never mutated


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Lines logged inside carry ``ids`` (None and empty values left out) on top of those bound outside."""
    unknown = set(ids) - set(FIELDS)
    if unknown:  # a fixed set of field names: a collector's schema must not grow with every call site
        raise ValueError(f"not a log id field: {', '.join(sorted(unknown))} (known: {', '.join(FIELDS)})")
    given = {name: str(value) for name, value in ids.items() if value is not None and value != ""}
    token = _ids.set({**_ids.get(), **given})
    try:
        yield
    finally:
        _ids.reset(token)


def bound_ids() -> dict[str, str]:
    """The ids bound where this is called (a copy)."""
    return dict(_ids.get())


def record_position(topic: str, partition: int, offset: int) -> str:
    """``topic:partition@offset``: the ``record`` id of an input, true whatever its bytes say."""
    return f"{topic}:{partition}@{offset}"


# ----------------------------------------------------------------------------------------------- JSON lines


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound ids, an exception as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = record.__dict__.get("cityloop_ids")
        entry.update(bound_ids() if ids is None else ids)  # a summary line says it has none
        repeated = record.__dict__.get("cityloop_repeated")
        if repeated is not None:
            entry["repeated"], entry["repeated_over_s"] = repeated
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class BoundIds(logging.Filter):
    """Takes the bound ids onto each record as it is handled, so a formatter elsewhere (another thread) sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "cityloop_ids" not in record.__dict__:
            record.cityloop_ids = bound_ids()
        return True


# ------------------------------------------------------------------------------------------ repeats held back


@dataclass
class _Kind:
    """One kind of line (logger, template) within its current interval."""

    since: float  # when the interval began: the line that passed, or the last summary
    held: int = 0
    last: logging.LogRecord | None = None  # the latest line held back, for the summary's wording


class RepeatThrottle(logging.Filter):
    """On a handler: the first WARNING or ERROR of each kind passes, its repeats are counted for a summary.

    :meth:`flush_due` (called about once a second by :meth:`start`'s thread, or by a test with its own clock)
    logs one line per kind whose interval is over and had repeats: the latest of them, ending ``[repeated N times
    in the last 10 s]``; the next interval begins then. A kind with no repeat for a whole interval is forgotten,
    so its next line passes at once. DEBUG and INFO lines (asked for with ``--verbose``) and CRITICAL ones always
    pass. Messages that client libraries log on an ordinary start and then retry on their own (the group
    coordinator not yet elected) are held back without a trace for the first ``settle_s`` seconds.
    """

    TRANSIENT_AT_START = ("GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError")
    MAX_KINDS = 2048  # messages built with f-strings make a kind each: forget the quiet ones beyond this

    def __init__(self, every_s: float = 10.0, settle_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.settle_until = clock() + settle_s
        self.kinds: dict[tuple[str, str], _Kind] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        decided = record.__dict__.get("cityloop_shown")
        if decided is not None:  # the same record on a second handler: the same answer, counted once
            return bool(decided)
        shown = self._decide(record)
        record.cityloop_shown = shown
        return shown

    def _decide(self, record: logging.LogRecord) -> bool:
        if not logging.WARNING <= record.levelno < logging.CRITICAL or "cityloop_repeated" in record.__dict__:
            return True
        now = self.clock()
        if now < self.settle_until and any(t in record.getMessage() for t in self.TRANSIENT_AT_START):
            return False
        key = (record.name, str(record.msg))
        with self._lock:
            kind = self.kinds.get(key)
            if kind is None:
                if len(self.kinds) >= self.MAX_KINDS:
                    self._forget_quiet(now)
                self.kinds[key] = _Kind(since=now)
                return True
            kind.held += 1
            kind.last = record
            return False

    def _forget_quiet(self, now: float) -> None:
        for key in [k for k, kind in self.kinds.items() if kind.held == 0 and now - kind.since >= self.every_s]:
            del self.kinds[key]

    def flush_due(self, now: float | None = None, every: bool = False) -> list[logging.LogRecord]:
        """Log a summary for each kind whose interval is over (``every``: each kind) that had repeats; returns them."""
        now = self.clock() if now is None else now
        summaries = []
        with self._lock:
            for key, kind in list(self.kinds.items()):
                if now - kind.since < self.every_s and not (every and kind.held):
                    continue
                if kind.held and kind.last is not None:
                    summaries.append(_summary(kind.last, kind.held, now - kind.since))
                    self.kinds[key] = _Kind(since=now)
                else:
                    del self.kinds[key]
        for summary in summaries:
            logging.getLogger(summary.name).handle(summary)
        return summaries

    def flush_all(self) -> list[logging.LogRecord]:
        """Summaries of every kind with repeats, due or not: the last lines of a process that stops."""
        return self.flush_due(every=True)

    def start(self) -> RepeatThrottle:
        """Flush due summaries from a daemon thread about once a second (works whatever the event loop does)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-repeats", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, self.every_s))
            self.flush_due()


def _summary(last: logging.LogRecord, held: int, over_s: float) -> logging.LogRecord:
    """The latest held-back line of a kind, as one line that says how many like it were held back."""
    message = last.getMessage()
    if last.exc_info and last.exc_info[1] is not None:  # the traceback was in the first line; here its gist
        message += f" ({type(last.exc_info[1]).__name__}: {last.exc_info[1]})"
    text = f"{message} [repeated {held} time{'s' if held != 1 else ''} in the last {over_s:.0f} s]"
    # args () rather than None: Faust's formatter makes a tuple of them, and (None,) would break the % formatting
    summary = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno, text, (), None)
    summary.cityloop_repeated = (held, round(over_s, 1))
    summary.cityloop_ids = {}  # many records' lines: none of their ids
    return summary


# -------------------------------------------------------------------------------------------------- set-up

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the API's and the connectors' lines


def throttle(repeat_s: float) -> RepeatThrottle | None:
    """The process's repeat throttle, flushing from its thread; None when ``repeat_s`` is 0 (every line shown)."""
    return RepeatThrottle(every_s=repeat_s).start() if repeat_s > 0 else None


def install(handlers: list[logging.Handler], log_format: LogFormat, repeats: RepeatThrottle | None) -> None:
    """The bound ids, JSON formatting (if asked) and the repeat throttle (if any) on each of ``handlers``."""
    for handler in handlers:
        handler.addFilter(BoundIds())
        if repeats is not None:
            handler.addFilter(repeats)
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


def configure(level: str, log_format: LogFormat, repeat_s: float) -> RepeatThrottle | None:
    """The root logger of a long-running command, before anything logs; returns its repeat throttle."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    repeats = throttle(repeat_s)
    install(logging.getLogger().handlers, log_format, repeats)
    return repeats
