"""The case API serves the public keys that sign commits, with no token: they are public."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.case.bootstrap import bootstrap
from services.case.infrastructure.signing import SigningKeyMissing
from services.case.infrastructure.store import StoreConfig, migrate
from services.case.settings import CaseSettings
from services.shared.settings import AuthSettings
from vss_contracts.signing import KEY_SET_PATH, PublicKeys


def test_the_well_known_key_set_lists_every_key_that_signed(tmp_path: Path) -> None:
    settings = CaseSettings(data_dir=tmp_path)
    migrate(StoreConfig(settings.store_url()))
    auth = AuthSettings(jwt_key="k" * 40)  # type: ignore[arg-type]
    parts = bootstrap(settings, auth=auth)  # the embedded defaults: a key is created on first use
    first = settings.keyring().signer().key_id
    key_file = tmp_path / "case" / "signing" / f"{first}.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # the private key: the owner's alone
    try:
        with TestClient(parts.app) as client:
            served = client.get(KEY_SET_PATH)
            assert served.status_code == 200
            assert list(PublicKeys.from_jwks(served.json())) == [first]
            settings.keyring().rotate()
            rotated = client.get(KEY_SET_PATH).json()
    finally:
        parts.close()
    assert {key["kid"] for key in rotated["keys"]} == {first, settings.keyring().signer().key_id}
    assert all(key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key for key in rotated["keys"])


def test_a_configured_key_directory_without_a_key_stops_the_service(tmp_path: Path) -> None:
    settings = CaseSettings(data_dir=tmp_path, signing_key_dir=tmp_path / "keys")
    migrate(StoreConfig(settings.store_url()))
    with pytest.raises(SigningKeyMissing, match="vss keys rotate"):
        bootstrap(settings, auth=AuthSettings(jwt_key="k" * 40))  # type: ignore[arg-type]
