"""A verified token's claims are kept, never past the token's exp nor longer than a minute."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from services.shared import auth
from services.shared.auth import VERIFIED_TOKEN_SECONDS, InvalidToken, TokenService, VerifiedTokens

KEY = "test-secret-" + "v" * 40


def _tokens() -> TokenService:
    return TokenService(key=KEY, algorithm="HS256", issuer="vss", audience="vss")


def _mint(tokens: TokenService, lifetime: timedelta) -> str:
    return tokens.mint(
        user_id="anna.k",
        organisation_id="vgr-psykiatri",
        principal="region",
        roles=["coordinator"],
        lifetime=lifetime,
    )


def test_a_verified_token_is_kept_at_most_a_minute() -> None:
    tokens = _tokens()
    token = _mint(tokens, timedelta(hours=1))
    now = time.time()
    claims = tokens.verify(token)
    assert tokens.verified.get(token, now + VERIFIED_TOKEN_SECONDS - 1) == claims
    assert tokens.verified.get(token, now + VERIFIED_TOKEN_SECONDS + 1) is None


def test_a_token_is_kept_no_longer_than_its_exp() -> None:
    tokens = _tokens()
    token = _mint(tokens, timedelta(seconds=20))
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    claims = tokens.verify(token)
    assert tokens.verified.get(token, expires - 0.5) == claims
    assert tokens.verified.get(token, expires) is None  # PyJWT refuses it from exp on


def test_a_kept_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _tokens()
    token = _mint(tokens, timedelta(seconds=20))
    assert tokens.verify(token).user_id == "anna.k"
    later = time.time() + 30

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(later, tz or UTC)

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)


def test_a_refused_token_is_not_kept() -> None:
    tokens = _tokens()
    forged = jwt.encode(
        {"sub": "anna.k", "iss": "vss", "aud": "vss", "exp": datetime.now(UTC) + timedelta(hours=1)},
        "another-key-" + "z" * 40,
        algorithm="HS256",
    )
    for _ in range(2):
        with pytest.raises(InvalidToken):
            tokens.verify(forged)
    assert tokens.verified.get(forged, time.time()) is None


def test_the_oldest_tokens_go_first_when_full() -> None:
    kept = VerifiedTokens(kept=4)
    claims = auth.TokenClaims("u", "o", "O", "region", frozenset({"coordinator"}))
    for name in "abcd":
        kept.keep(name, claims, until=time.time() + 60)
    kept.keep("e", claims, until=time.time() + 60)
    now = time.time()
    assert kept.get("a", now) is None
    assert kept.get("e", now) == claims
    assert kept.get("d", now) == claims
