"""Signed webhooks: what an organisation's receiver needs to check that VSS sent a request.

VSS POSTs a JSON document (``Content-Type: application/json``) with these headers:

- ``X-VSS-Delivery``: the delivery key, unique per (event, recipient, channel). A request
  sent again after a crash or a retry carries the same key: a receiver that has seen it
  already answers 2xx and does nothing.
- ``X-VSS-Message-Id``: the message id (``<key@vss.se>``), the same as in e-mails.
- ``X-VSS-Timestamp``: when the request was signed, in Unix seconds.
- ``X-VSS-Signature``: ``v1=<hex>``, where ``<hex>`` is HMAC-SHA256 with the webhook's
  shared secret over ``f"{timestamp}.".encode() + body`` (the raw body bytes exactly as
  received, before any JSON parsing). Several signatures may be given, separated by
  commas (``v1=<a>,v1=<b>``), e.g. while a secret is being rotated; one match suffices.
  Other versions (``v2=…``) are ignored by this version of the contracts.

A receiver calls :func:`verify` with its secret, the two headers and the raw body; it
raises :class:`WebhookSignatureInvalid` (a ``ValueError``) with the reason, or returns.
Signing the timestamp with the body and rejecting stale timestamps (5 minutes by
default) stops a captured request from being replayed later.

This module uses the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "DELIVERY_HEADER",
    "MESSAGE_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "WebhookSignatureInvalid",
    "sign",
    "verify",
]

DELIVERY_HEADER = "X-VSS-Delivery"
MESSAGE_ID_HEADER = "X-VSS-Message-Id"
TIMESTAMP_HEADER = "X-VSS-Timestamp"
SIGNATURE_HEADER = "X-VSS-Signature"
SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS = 300

_HEX_DIGEST_LENGTH = hashlib.sha256().digest_size * 2


class WebhookSignatureInvalid(ValueError):
    """The request is not a valid, fresh, signed VSS webhook; the message says why."""


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The ``X-VSS-Signature`` value for ``body`` signed at ``timestamp``: ``v1=<hex>``."""
    return f"{SIGNATURE_VERSION}={_digest(_key(secret), int(timestamp), body)}"


def verify(
    secret: bytes | str,
    *,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> None:
    """Check a received webhook; raise :class:`WebhookSignatureInvalid` if it is not genuine.

    ``timestamp_header`` and ``signature_header`` are the raw values of ``X-VSS-Timestamp``
    and ``X-VSS-Signature`` (``None`` or empty when missing); ``body`` the raw request body;
    ``now`` the receiver's time in Unix seconds (default: the system clock). The timestamp
    may differ from ``now`` by at most ``tolerance_seconds`` either way.
    """
    if not timestamp_header or not timestamp_header.strip():
        raise WebhookSignatureInvalid(f"missing {TIMESTAMP_HEADER} header")
    text = timestamp_header.strip()
    if not text.isascii() or not text.isdigit():
        raise WebhookSignatureInvalid(f"malformed {TIMESTAMP_HEADER} header: expected Unix seconds")
    timestamp = int(text)
    if not signature_header or not signature_header.strip():
        raise WebhookSignatureInvalid(f"missing {SIGNATURE_HEADER} header")

    candidates: list[str] = []
    for item in signature_header.split(","):
        version, sep, value = item.strip().partition("=")
        if not sep:
            raise WebhookSignatureInvalid(
                f"malformed {SIGNATURE_HEADER} header: expected {SIGNATURE_VERSION}=<hex>[,…]"
            )
        if version.strip() != SIGNATURE_VERSION:
            continue  # another scheme's signature: not ours to judge
        value = value.strip().lower()
        if len(value) != _HEX_DIGEST_LENGTH or any(c not in "0123456789abcdef" for c in value):
            raise WebhookSignatureInvalid(
                f"malformed {SIGNATURE_HEADER} header: a {SIGNATURE_VERSION} signature is "
                f"{_HEX_DIGEST_LENGTH} hex digits"
            )
        candidates.append(value)
    if not candidates:
        raise WebhookSignatureInvalid(f"no {SIGNATURE_VERSION} signature in {SIGNATURE_HEADER} header")

    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureInvalid(
            f"stale {TIMESTAMP_HEADER}: {timestamp} is {abs(current - timestamp):.0f} s from now "
            f"(tolerance {tolerance_seconds} s)"
        )

    expected = _digest(_key(secret), timestamp, body)
    # Compare every candidate (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureInvalid(
            "signature mismatch: wrong secret, or the body or timestamp was altered"
        )
