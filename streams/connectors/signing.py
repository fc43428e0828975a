"""Signing what a connector sends and checking what comes back: HMAC-SHA256 over ``<timestamp>.<body>``.

The header is ``X-CityLoop-Signature: t=<unix seconds>,v1=<hex digest>``, the scheme Stripe's webhooks made
familiar: the timestamp is signed with the body, so a captured request cannot be replayed later with a fresh
time, and a receiver refuses one whose time is more than ``tolerance`` away from its clock. Several ``v1=`` values
may be given (while a secret is being rotated); one matching is enough. Pure functions: the time is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-CityLoop-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A request whose signature header is missing, malformed, wrong or too old; the message says which."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code  # missing | malformed | mismatch | stale
        self.reason = reason


def digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float) -> str:
    """The header value for ``body`` sent at ``now`` (unix seconds)."""
    timestamp = int(now)
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def parse(header: str | None) -> tuple[int, list[str]]:
    """(timestamp, [v1 digests]) of a header value; :class:`SignatureError` if it is not one."""
    if not header or not header.strip():
        raise SignatureError("missing", f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed", f"{SIGNATURE_HEADER} must read t=<unix seconds>,v1=<hex>")
        if name == "t":
            if not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed", f"{SIGNATURE_HEADER}: t must be unix seconds")
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} must give t and at least one v1")
    return timestamp, signatures


def verify(secret: bytes, header: str | None, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S) -> int:
    """Check a request; returns its signed timestamp, raises :class:`SignatureError` when it must be refused."""
    timestamp, signatures = parse(header)
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("mismatch", "the signature does not match the body (wrong secret, or the body changed)")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("stale", f"signed {int(now - timestamp)} s from now; at most {int(tolerance_s)} s allowed")
    return timestamp
