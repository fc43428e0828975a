"""The worker process around the Faust app: its log (quiet, text or JSON, repeats held back) and its stop.

Faust's worker (mode's) runs the process: it sets up logging, installs the signal handlers, starts the app and
stops it. :class:`QuietWorker` changes four things:

* **the log**: the client libraries' lines only when asked (``--verbose``), the format asked for (text or JSON,
  streams/logs.py), and repeated warnings and errors held back to one line per interval;
* **the signals**: SIGTERM and SIGINT get a plain Python handler instead of the event loop's, so they are seen even
  while the loop is stuck (a handler registered with the loop runs only when the loop gets round to it). The
  handler turns readiness off at once (``/readyz`` 503 ``stopping``), arms the shutdown watchdog
  (streams/shutdown.py) and asks the loop to stop;
* **the bound**: the stop that follows runs as before (the ingest commits what it finished, the producer flushes);
  if it has not ended after ``CITYLOOP_SHUTDOWN_GRACE_S`` the watchdog says what it abandons and exits;
* **the words**: one line when a signal arrives and one when the worker stopped, instead of Faust's spinner and
  its dozen lines.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

import faust

from streams import logs
from streams.console import quiet_client_libraries
from streams.shutdown import ShutdownWatchdog, flush_streams

log = logging.getLogger("streams.app")


class QuietWorker(faust.Worker):
    """Faust's worker as a person at a terminal (or a log collector) wants it, with a stop that ends in time.

    Faust's terminal spinner is off: at log levels of WARNING and above Faust
    sets the *root* logger to DEBUG so that every log record turns it; every
    library's debug message (aiokafka logs one per record sent) is then
    formatted and handled. That took about a tenth of a busy worker's time.
    """

    def __init__(
        self,
        *args: Any,
        verbose: bool = False,
        log_format: logs.LogFormat = "text",
        repeats: logs.RepeatThrottle | None = None,
        grace_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.verbose = verbose
        self.log_format: logs.LogFormat = log_format
        self.repeats = repeats
        self.watchdog = ShutdownWatchdog(grace_s, self._abandoned, flush=self._flush).start()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        quiet_client_libraries(logging.NOTSET if self.verbose else logging.ERROR)
        logs.install(logger.handlers, self.log_format, self.repeats)  # mode replaced the handlers it found

    def _on_startup_end_spinner(self) -> None:
        pass  # the ingest says "ready" when it holds partitions, which is what ready means here

    # ------------------------------------------------------------------------------------------- the stop

    def _install_signal_handlers_unix(self) -> None:
        super()._install_signal_handlers_unix()  # SIGUSR1 (the tasks' stacks) and SIGUSR2 stay the loop's
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.remove_signal_handler(signum)
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        """Runs in the main thread between two bytecodes, whatever the loop is doing: only flags and one call."""
        health = getattr(self.app, "cityloop_health", None)
        if health is not None:
            health.stopping = True
        self.watchdog.arm(signum)
        with contextlib.suppress(RuntimeError):  # the loop is closed already: the process is on its way out
            self.loop.call_soon_threadsafe(self._schedule_shutdown, signal.Signals(signum))

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            log.info("%s received: stopping (within %g s); finished batches are committed, one in flight is read "
                     "again by the next owner of its partitions", getattr(signal, "name", signal),
                     self.watchdog.grace_s)  # fmt: skip
        super()._schedule_shutdown(signal)

    def _abandoned(self) -> str:
        ingest = getattr(self.app, "cityloop_ingest", None)
        return ingest.abandoned() if ingest is not None else "nothing (the worker had not started its ingest)"

    def _flush(self) -> None:
        if self.repeats is not None:
            self.repeats.flush_all()
        flush_streams()

    def _shutdown_loop(self) -> None:
        if self.crash_reason is None:
            ingest = getattr(self.app, "cityloop_ingest", None)
            behind = ingest.uncommitted_at_stop if ingest is not None else 0
            if behind:
                log.warning(
                    "stopped; the last offsets of %d partition(s) could not be committed (is the broker reachable?): "
                    "their next owner reads those records again and makes nothing twice",
                    behind,
                )
            else:
                log.info("stopped: every service is down and the ingest committed its offsets")
        if self.repeats is not None:
            self.repeats.flush_all()
        super()._shutdown_loop()
