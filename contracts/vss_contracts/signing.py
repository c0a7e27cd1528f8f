"""Commit signatures: Ed25519 over the hash of each commit's last event.

A command appends one or more events to a case in one commit; the case service signs
the commit once, over the ``eventhash`` of its last event, which chains (``prevhash``) to
every event before it. The signature travels on that last event as two CloudEvents
extension attributes, ``vsssig`` (the 64-byte Ed25519 signature, base64url without
padding) and ``vsskeyid`` (the id of the key that made it); the other events of the commit
carry neither. The signed bytes are :data:`SIGNATURE_CONTEXT` followed by the 64 hex
digits of the hash, in ASCII (docs/verifying.md).

The public keys are a JSON Web Key Set (RFC 7517, Ed25519 keys as in RFC 8037: ``kty``
``OKP``, ``crv`` ``Ed25519``, ``x`` the 32-byte key base64url), served by the case API at
``/.well-known/vss-keys.json`` and written by ``vss keys export``. Keys are rotated, never
withdrawn from the set: an old event keeps verifying with the key that signed it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "KEY_SET_PATH",
    "SIGNATURE_CONTEXT",
    "InvalidKeySet",
    "PublicKeys",
    "b64url_decode",
    "b64url_encode",
    "jwk",
    "signature_input",
]

SIGNATURE_CONTEXT = b"vss-commit-v1:"  # keeps a commit signature from meaning anything else
KEY_SET_PATH = "/.well-known/vss-keys.json"  # on the case API
_HASH = re.compile(r"[0-9a-f]{64}")


class InvalidKeySet(ValueError):
    """A key set document that is not a JWKS of Ed25519 public keys with ids."""


def signature_input(event_hash: str) -> bytes:
    """The bytes a commit signature is made over: the context, then the hash's 64 hex digits."""
    if not _HASH.fullmatch(event_hash):
        raise ValueError(f"not a sha256 hex digest: {event_hash!r}")
    return SIGNATURE_CONTEXT + event_hash.encode("ascii")


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url without padding (RFC 4648 §5, as in JWK); ValueError on anything else."""
    if not isinstance(text, str) or "=" in text or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as error:
        raise ValueError(str(error)) from None


@dataclass(frozen=True)
class PublicKeys:
    """The public keys that sign commits, by key id."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def verifies(self, key_id: str, signature: str, event_hash: str) -> bool:
        """Whether ``signature`` (base64url) by ``key_id`` signs ``event_hash`` (False: unknown key)."""
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(b64url_decode(signature), signature_input(event_hash))
        except (InvalidSignature, ValueError):
            return False
        return True

    def with_key(self, key_id: str, key: Ed25519PublicKey) -> PublicKeys:
        return PublicKeys({**self.keys, key_id: key})

    # ------------------------------------------------------------------------ JWKS documents
    @classmethod
    def from_jwks(cls, document: Mapping[str, Any]) -> PublicKeys:
        """The keys of a JWKS document (``{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid", "x"}]}``)."""
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            raise InvalidKeySet('a key set is a JSON object with a "keys" array')
        keys: dict[str, Ed25519PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise InvalidKeySet("each key is a JSON object")
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidKeySet('each key needs a "kid"')
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                raise InvalidKeySet(f"key {kid!r} is not an Ed25519 key (kty OKP, crv Ed25519)")
            try:
                raw = b64url_decode(str(entry.get("x", "")))
                keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError as error:
                raise InvalidKeySet(f"key {kid!r} has no valid 32-byte x: {error}") from None
        return cls(keys)

    @classmethod
    def from_json(cls, text: str | bytes) -> PublicKeys:
        try:
            document = json.loads(text)
        except ValueError as error:
            raise InvalidKeySet(f"a key set is JSON: {error}") from None
        return cls.from_jwks(document)

    @classmethod
    def from_file(cls, path: Path) -> PublicKeys:
        try:
            return cls.from_json(path.read_bytes())
        except OSError as error:
            raise InvalidKeySet(f"cannot read the key set {path}: {error.strerror or error}") from None

    def to_jwks(self) -> dict[str, Any]:
        return {"keys": [jwk(kid, key) for kid, key in sorted(self.keys.items())]}


def jwk(key_id: str, key: Ed25519PublicKey) -> dict[str, str]:
    """One public key as a JWK (RFC 8037)."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": key_id,
        "x": b64url_encode(raw),
        "alg": "EdDSA",
        "use": "sig",
    }
