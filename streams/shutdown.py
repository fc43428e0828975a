"""A worker's stop ends within a bound, whatever the broker does.

A graceful stop commits the finished offsets, leaves the consumer group and flushes the producer: every step asks
the broker. With the broker killed, Ctrl-C took 62 s (each step waited for its own timeout); after a dev-broker
restart one worker ignored SIGTERM for three minutes and had to be SIGKILLed, which Kubernetes would also do after
``terminationGracePeriodSeconds`` (30 s), with no word in the log about why.

:class:`ShutdownWatchdog` is armed by the first SIGTERM or SIGINT. The graceful stop runs as before; if the process
is still there after the grace (``CITYLOOP_SHUTDOWN_GRACE_S``, 10 s), the watchdog, on a thread of its own (so an
event loop that is stuck waiting for the broker does not hold it up), logs one line saying what was abandoned,
flushes what needs no broker (the log's held-back repeat counts, the log handlers, stdout and stderr) and exits
with 128 + the signal's number (143 after SIGTERM, 130 after Ctrl-C): a stop that was cut short is not a clean
one. A second SIGTERM or Ctrl-C while the stop runs does the same at once.

Why abandoning is safe: at least once, the ingest commits an input's offset only after its batch is done, and the
ledger (streams/state.py) stores each outcome under its key before it is sent and marks it sent only once the
broker acknowledged it. The partitions' next owner reads the uncommitted records again; for each, the ledger
answers with the stored outcome (same incident, task and event ids): skipped if its send was confirmed, sent again
as stored if not. Exactly once, an uncommitted transaction is aborted by the broker and its batch is read again.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("streams.shutdown")


def flush_streams() -> None:
    """The log handlers, stdout and stderr: what a process can still flush when the broker is gone."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001, S110 - a handler that cannot flush must not keep the process alive
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or a broken pipe: nothing more to do for it
            pass


class ShutdownWatchdog:
    """Exits the process ``grace_s`` after it is armed, unless the process ended first.

    :meth:`arm` is called from a signal handler, which runs in the main thread between two bytecodes of whatever
    it was doing: it only assigns an attribute (no lock, no thread start, nothing that could wait on the code it
    interrupted). The watchdog's thread, started beforehand with :meth:`start`, looks at that attribute five times
    a second. ``abandoned`` says, when the grace is over, what the stop leaves undone (it runs on the watchdog's
    thread, so it only reads); ``flush`` runs just before the exit; ``exit`` is :func:`os._exit` (tests give their
    own), which ends the process without waiting for threads, atexit hooks or the event loop, any of which may be
    what hangs.
    """

    POLL_S = 0.2
    LAST_RESORT_S = 2.0  # if logging or flushing itself hangs (a full pipe), the exit comes anyway

    def __init__(
        self,
        grace_s: float,
        abandoned: Callable[[], str],
        *,
        flush: Callable[[], None] = flush_streams,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_s = grace_s
        self.abandoned = abandoned
        self.flush = flush
        self.exit = exit
        self.clock = clock
        self.signum: int | None = None
        self.deadline: float | None = None
        self.expired = False
        self._thread: threading.Thread | None = None

    def start(self) -> ShutdownWatchdog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True)
            self._thread.start()
        return self

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def arm(self, signum: int) -> None:
        """Start the grace period (the first stop signal); a second signal meanwhile cuts the stop short now."""
        if self.deadline is None:
            self.signum = signum
            self.deadline = self.clock() + self.grace_s
            return
        self.expire(again=signum)

    def _watch(self) -> None:
        while True:
            time.sleep(self.POLL_S)
            if self.deadline is not None and self.clock() >= self.deadline:
                self.expire()
                return

    def expire(self, again: int | None = None) -> None:
        """Say what is abandoned, flush, exit with 128 + the signal's number."""
        if self.expired:
            return
        self.expired = True
        signum = self.signum or signal.SIGTERM
        code = 128 + signum
        last_resort = threading.Timer(self.LAST_RESORT_S, self.exit, (code,))
        last_resort.daemon = True
        last_resort.start()
        try:
            what = self.abandoned()
        except Exception as exc:  # noqa: BLE001 - the exit matters more than the description
            what = f"unknown ({type(exc).__name__}: {exc})"
        name = signal.Signals(signum).name
        if again is not None:
            cause = f"{signal.Signals(again).name} again while stopping after {name}"
        else:
            cause = f"the stop after {name} did not finish within {self.grace_s:g} s (is the broker answering?)"
        log.error("%s: exiting with status %d; abandoned: %s", cause, code, what)
        self.flush()
        self.exit(code)
