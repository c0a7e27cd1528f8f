"""Bearer tokens: who a token names, how long it may live, which keys may sign it.

A person is (org, sub): a token with an empty one is refused. A token living longer than
the limit is refused. A key that cannot work stops the service at start with one line. An
identity provider's keys come from its JWKS, served here by a real local HTTP server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from services.case import main as case_main
from services.shared.auth import InvalidToken, KeysUnavailable, TokenKeyInvalid, TokenService
from services.shared.settings import AuthSettings

KEY = "test-secret-" + "t" * 40
TOKENS = TokenService(key=KEY, algorithm="HS256", issuer="vss", audience="vss")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "anna.k",
        "org": "vgr-psykiatri",
        "principal": "region",
        "roles": ["coordinator"],
        "iss": "vss",
        "aud": "vss",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), KEY, algorithm="HS256")


def test_a_well_formed_token_names_its_person() -> None:
    claims = TOKENS.verify(_signed())
    assert (claims.organisation_id, claims.user_id) == ("vgr-psykiatri", "anna.k")


@pytest.mark.parametrize("field", ["sub", "org"])
@pytest.mark.parametrize("value", ["", "   "])
def test_a_token_with_an_empty_sub_or_org_is_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidToken):
        TOKENS.verify(_signed(**{field: value}))


def test_a_token_living_longer_than_the_limit_is_refused() -> None:
    now = int(time.time())
    limit = TokenService(KEY, "HS256", "vss", "vss", max_lifetime=timedelta(hours=12))
    assert limit.verify(_signed(iat=now, exp=now + 12 * 3600)).user_id == "anna.k"
    with pytest.raises(InvalidToken, match="at most 12 h"):
        limit.verify(_signed(iat=now, exp=now + 12 * 3600 + 60))
    # Without iat, the lifetime is counted from now.
    assert limit.verify(_signed(iat=None, exp=now + 11 * 3600)).user_id == "anna.k"
    with pytest.raises(InvalidToken, match="at most 12 h"):
        limit.verify(_signed(iat=None, exp=now + 30 * 24 * 3600))


def test_the_lifetime_limit_is_a_setting(tmp_path: Path) -> None:
    tokens = TokenService.from_settings(
        AuthSettings(jwt_key=SecretStr(KEY), max_token_lifetime_hours=1), tmp_path
    )
    now = int(time.time())
    with pytest.raises(InvalidToken):
        tokens.verify(_signed(iat=now, exp=now + 2 * 3600))
    with pytest.raises(ValueError, match="at most"):
        tokens.mint(
            user_id="a", organisation_id="o", principal="region", roles=[], lifetime=timedelta(hours=2)
        )


@pytest.mark.parametrize(
    ("key", "algorithm", "reason"),
    [
        ("short-secret", "HS256", "at least 32"),
        ("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "HS256", "not a HS256 key"),
        ("not a pem key at all, but long enough for hmac", "RS256", "not a RS256 key"),
        ("k" * 40, "none", "not a signing algorithm"),
    ],
)
def test_a_key_that_cannot_work_is_refused_at_start(key: str, algorithm: str, reason: str) -> None:
    settings = AuthSettings(jwt_key=SecretStr(key), jwt_algorithm=algorithm)
    with pytest.raises(TokenKeyInvalid, match=reason) as refused:
        TokenService.from_settings(settings, Path("unused"))
    assert "\n" not in str(refused.value)


def test_the_case_service_stops_at_start_with_one_line_on_a_short_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VSS_AUTH_JWT_KEY", "too-short")
    assert case_main.main() == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "VSS_AUTH_JWT_KEY is 9 bytes" in line


# --------------------------------------------------------------------------- JWKS
class _Jwks:
    """A real HTTP server serving a JWKS that a test can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.body: bytes | None = None  # served instead of the key set (a provider gone wrong)
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = owner.body or json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"


@pytest.fixture
def jwks_server() -> Iterator[_Jwks]:
    served = _Jwks()
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()


def _jwk(public: Any, kid: str, algorithm: str) -> dict[str, Any]:
    encode = jwt.algorithms.RSAAlgorithm if algorithm.startswith("RS") else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = json.loads(encode.to_jwk(public))
    return {**jwk, "kid": kid, "use": "sig", "alg": algorithm}


def test_tokens_from_the_identity_provider_verify_across_a_key_rotation(
    jwks_server: _Jwks, tmp_path: Path
) -> None:
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = ec.generate_private_key(ec.SECP256R1())
    jwks_server.keys = [_jwk(first.public_key(), "key-1", "RS256")]
    tokens = TokenService.from_settings(
        AuthSettings(jwks_url=jwks_server.url, jwks_refetch_cooldown_seconds=0), tmp_path
    )
    assert tokens.key is None  # no embedded key is made beside the provider's
    assert not (tmp_path / "keys").exists()

    one = jwt.encode(_claims(), first, algorithm="RS256", headers={"kid": "key-1"})
    assert tokens.verify(one).user_id == "anna.k"
    assert tokens.verify(one).user_id == "anna.k"
    assert jwks_server.fetches == 1  # the key set is cached

    # The provider rotates: a token signed with the new key makes the client refetch once.
    jwks_server.keys = [_jwk(second.public_key(), "key-2", "ES256")]
    two = jwt.encode(_claims(sub="erik.s"), second, algorithm="ES256", headers={"kid": "key-2"})
    assert tokens.verify(two).user_id == "erik.s"
    assert jwks_server.fetches == 2

    # A kid the provider does not publish, a token without a kid, a forged key: refused.
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        tokens.verify(jwt.encode(_claims(), forged, algorithm="RS256", headers={"kid": "key-9"}))
    with pytest.raises(InvalidToken):
        tokens.verify(jwt.encode(_claims(), forged, algorithm="RS256", headers={"kid": "key-2"}))
    with pytest.raises(InvalidToken):
        tokens.verify(_signed())  # HS256 with no kid: there is no static key


@pytest.mark.parametrize(
    "body",
    [b'{"keys": []}', b"<html>502 Bad Gateway</html>", b'{"keys": [{"kty": "RSA", "kid": "key-1"}]}'],
    ids=["no keys", "not json", "unusable key"],
)
def test_a_broken_key_set_makes_the_keys_unavailable_not_an_error(
    jwks_server: _Jwks, tmp_path: Path, body: bytes
) -> None:
    """A provider answering with no usable keys: 503 (try again), not a 500 on every request."""
    jwks_server.body = body
    tokens = TokenService.from_settings(
        AuthSettings(jwks_url=jwks_server.url, jwks_refetch_cooldown_seconds=0), tmp_path
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "key-1"})
    with pytest.raises(KeysUnavailable):
        tokens.verify(token)


# ------------------------------------------------------------------------ a client's token
PIN_CLAIM = "https://id.oidc.se/claim/personalIdentityNumber"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"


def _client(**overrides: Any) -> str:
    claims = {
        "sub": "e-id-subject-4711",  # the identity provider's own id of the person
        PIN_CLAIM: "191212121212",
        "roles": ["client"],
        "acr": LOA3,
        "org": None,
        "principal": None,
        **overrides,
    }
    return _signed(**claims)


def test_a_clients_token_names_them_by_personal_identity_number() -> None:
    claims = TOKENS.verify(_client())
    assert (claims.user_id, claims.organisation_id, claims.principal) == ("191212121212", "", "client")
    assert claims.roles == frozenset({"client"})
    assert claims.is_client
    assert not TOKENS.verify(_signed()).is_client


def test_minted_client_tokens_verify_and_a_written_number_is_normalised() -> None:
    claims = TOKENS.verify(TOKENS.mint_client("19121212-1212"))
    assert (claims.user_id, claims.principal) == ("191212121212", "client")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({PIN_CLAIM: "191212121213"}, "Luhn"),
        ({PIN_CLAIM: None}, "needs https://id.oidc.se/claim/personalIdentityNumber"),
        ({PIN_CLAIM: 191212121212}, "needs https://id.oidc.se/claim/personalIdentityNumber"),
        ({"acr": None}, "acr"),
        ({"acr": "http://id.elegnamnden.se/loa/1.0/loa2"}, "acr"),
        ({"roles": ["client", "coordinator"]}, "no other"),
        ({"org": "vgr-psykiatri"}, "names no org"),
        ({"principal": "region"}, "names no org"),
    ],
    ids=[
        "bad-check-digit",
        "no-number",
        "number-not-text",
        "no-acr",
        "low-assurance",
        "staff-role",
        "org",
        "principal",
    ],
)
def test_a_clients_token_is_refused_unless_it_is_only_a_client_with_enough_assurance(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        TOKENS.verify(_client(**overrides))


def test_the_accepted_assurance_levels_are_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSS_AUTH_CLIENT_ACR", '["https://example.se/loa/high"]')
    tokens = TokenService.from_settings(AuthSettings(jwt_key=SecretStr(KEY)), tmp_path)
    assert tokens.verify(_client(acr="https://example.se/loa/high")).is_client
    with pytest.raises(InvalidToken, match="acr"):
        tokens.verify(_client())
