"""The streams package's errors that a command reports as one line: a service not answering, or not starting.

They are expected failures with a known cause and a next step, never bugs; the
CLI (streams/console.py) prints their message and exits 1.
"""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A service a command needs or starts is not usable; the message says which, why, and what to do next."""


class Unreachable(ServiceError):
    """A service a command needs did not answer in time."""


class FailedToStart(ServiceError):
    """A process a command started (the dev broker, an embedded Redis, a worker) exited or never became ready."""
