"""The HTTP server under ``cityloop api``: uvicorn, with the exit status of a graceful stop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that a stop on SIGTERM or Ctrl-C that shut down cleanly exits 0, like the worker.

    uvicorn raises the captured signal again once it has shut down, so the
    process would end with status 143 (or 130) although nothing went wrong;
    supervisors and ``systemctl status`` then show a failure.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                getattr(self, "_captured_signals", []).clear()
