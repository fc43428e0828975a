"""Signatures over <timestamp>.<body>: what a receiver accepts and what it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from streams.connectors.signing import SignatureError, sign, verify

SECRET = b"s3cret"
BODY = b'{"kind":"task","id":"tsk-1"}'
NOW = 1_800_000_000


def test_a_signature_is_hmac_sha256_over_timestamp_dot_body():
    """The documented scheme, computed independently: a receiver in any language can check it."""
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_a_fresh_signed_body_is_accepted():
    assert verify(SECRET, sign(SECRET, BODY, NOW), BODY, NOW + 10) == NOW


@pytest.mark.parametrize(
    ("header", "body", "now", "code"),
    [
        (sign(SECRET, BODY, NOW), BODY.replace(b"tsk-1", b"tsk-2"), NOW, "mismatch"),  # tampered body
        (sign(b"other", BODY, NOW), BODY, NOW, "mismatch"),  # wrong secret
        (sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 1}"), BODY, NOW, "mismatch"),  # re-dated
        (sign(SECRET, BODY, NOW), BODY, NOW + 301, "stale"),  # too old
        (sign(SECRET, BODY, NOW + 400), BODY, NOW, "stale"),  # from the future
        (None, BODY, NOW, "missing"),
        ("v1=abc", BODY, NOW, "malformed"),
        ("t=soon,v1=abc", BODY, NOW, "malformed"),
        ("garbage", BODY, NOW, "malformed"),
    ],
)
def test_a_tampered_stale_or_malformed_request_is_refused(header, body, now, code):
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, header, body, now, tolerance_s=300)
    assert caught.value.code == code


def test_one_matching_v1_of_several_is_enough_while_a_secret_is_rotated():
    old = sign(b"old", BODY, NOW).split(",")[1]
    assert verify(SECRET, f"{sign(SECRET, BODY, NOW)},{old}", BODY, NOW) == NOW
    assert verify(b"old", f"{sign(SECRET, BODY, NOW)},{old}", BODY, NOW) == NOW
