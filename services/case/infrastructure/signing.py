"""The case service's signing keys: a directory outside the database.

Layout of the directory (``VSS_SIGNING_KEY_DIR``; the embedded defaults use
``<data dir>/case/signing``, created on first use):

- ``<key id>.pem``: an Ed25519 private key (PKCS#8 PEM, mode 0600). Only the current key's
  file needs to exist; ``vss keys rotate`` removes the one it retires, so that key can sign
  nothing more.
- ``current``: the id of the key that signs new commits (``VSS_SIGNING_KEY_ID`` overrides it,
  naming one of the ``.pem`` files).
- ``keys.json``: the public key of every key that ever signed (a JWKS): what the case API
  serves and ``vss keys export`` writes, so old events keep verifying after a rotation.

Nothing here is in the database: an administrator who can rewrite the event tables cannot
sign what they wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_seed_keypair

from services.case.domain.events import CommitSeal
from services.shared.files import PRIVATE, write_private
from vss_contracts.signing import PublicKeys, b64url_encode, signature_input

__all__ = ["CommitSigner", "Keyring", "SigningKeyMissing"]

CURRENT_FILE = "current"
KEY_SET_FILE = "keys.json"


class SigningKeyMissing(RuntimeError):
    """No usable private key to sign commits with (a one-line reason for the operator)."""


@dataclass(frozen=True)
class CommitSigner:
    """Signs commits with one private key, once per commit (not per event).

    The key files are read and written with ``cryptography``; the signing itself goes through
    libsodium (PyNaCl): the same Ed25519 signature (deterministic, RFC 8032), about a third
    less CPU on the append path than OpenSSL's (docs/performance.md).
    """

    key_id: str
    private_key: Ed25519PrivateKey
    _libsodium_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        _public, secret = crypto_sign_seed_keypair(seed)
        object.__setattr__(self, "_libsodium_key", secret)

    def seal(self, event_hash: str) -> CommitSeal:
        # crypto_sign returns signature || message: the signature is the first 64 bytes.
        signed = crypto_sign(signature_input(event_hash), self._libsodium_key)
        return CommitSeal(self.key_id, b64url_encode(signed[:crypto_sign_BYTES]))

    @classmethod
    def generate(cls, key_id: str | None = None) -> CommitSigner:
        return cls(key_id or new_key_id(), Ed25519PrivateKey.generate())


def new_key_id() -> str:
    """Sortable by creation and unique: ``case-20261206-3f9a1c2b``."""
    return f"case-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Keyring:
    """The signing key directory (see the module docstring)."""

    directory: Path
    current_id: str | None = None  # VSS_SIGNING_KEY_ID: overrides the ``current`` file

    # -------------------------------------------------------------------------------- reading
    def public_keys(self) -> PublicKeys:
        """Every key that ever signed: ``keys.json``, plus any private key present (a key file
        written by another process a moment ago is not missed)."""
        keys = PublicKeys()
        path = self.directory / KEY_SET_FILE
        if path.exists():
            keys = PublicKeys.from_file(path)
        for pem in sorted(self.directory.glob("*.pem")):
            if pem.stem not in keys:
                keys = keys.with_key(pem.stem, self._load(pem.stem).public_key())
        return keys

    def signer(self) -> CommitSigner:
        """The current key (:class:`SigningKeyMissing` if there is none)."""
        key_id = self.current_id or self._current_file()
        if key_id is None:
            raise SigningKeyMissing(
                f"no signing key in {self.directory}: create one with `vss keys rotate`"
                " (or set VSS_SIGNING_KEY_DIR to the directory that holds it)"
            )
        return CommitSigner(key_id, self._load(key_id))

    def ensure(self) -> CommitSigner:
        """The current key, created first if the directory has none (the embedded defaults).

        Two processes starting together end up with the same key: the ``current`` file is
        created exclusively, and the loser removes its own key.
        """
        existing = self.current_id or self._current_file()
        if existing is not None:
            return self.signer()
        candidate = CommitSigner.generate()
        self._write_key(candidate)
        try:
            self._create_current(candidate.key_id)
        except FileExistsError:
            (self.directory / f"{candidate.key_id}.pem").unlink(missing_ok=True)
            return self.signer()
        self._publish(candidate)
        return candidate

    # ------------------------------------------------------------------------------- rotation
    def rotate(self) -> CommitSigner:
        """A new current key; the old one's public key stays in the set, its private key goes."""
        if self.current_id is not None:
            raise SigningKeyMissing(
                "VSS_SIGNING_KEY_ID names the current key: rotate by adding a key file and changing it"
            )
        previous = self._current_file()
        fresh = CommitSigner.generate()
        self._write_key(fresh)
        if previous is not None:
            with contextlib.suppress(FileNotFoundError):
                self._publish(CommitSigner(previous, self._load(previous)))
        self._publish(fresh)
        write_private(self.directory / CURRENT_FILE, fresh.key_id.encode())
        if previous is not None and previous != fresh.key_id:
            (self.directory / f"{previous}.pem").unlink(missing_ok=True)
        return fresh

    # ------------------------------------------------------------------------------ internals
    def _current_file(self) -> str | None:
        try:
            return (self.directory / CURRENT_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _load(self, key_id: str) -> Ed25519PrivateKey:
        path = self.directory / f"{key_id}.pem"
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise SigningKeyMissing(f"the signing key {key_id!r} has no private key file {path}") from None
        except ValueError as error:
            raise SigningKeyMissing(f"{path} is not a PEM private key: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyMissing(f"{path} is not an Ed25519 key")
        return key

    def _write_key(self, signer: CommitSigner) -> None:
        pem = signer.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.directory / f"{signer.key_id}.pem", pem)

    def _create_current(self, key_id: str) -> None:
        fd = os.open(self.directory / CURRENT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        with os.fdopen(fd, "w") as handle:
            handle.write(key_id)

    def _publish(self, signer: CommitSigner) -> None:
        """Add the key's public half to ``keys.json`` (kept: old events verify with it)."""
        path = self.directory / KEY_SET_FILE
        keys = PublicKeys.from_file(path) if path.exists() else PublicKeys()
        if signer.key_id in keys:
            return
        keys = keys.with_key(signer.key_id, signer.private_key.public_key())
        write_private(path, (json.dumps(keys.to_jwks(), indent=2) + "\n").encode())
