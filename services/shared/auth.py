"""Bearer JWTs: verification for the APIs, minting for the embedded defaults (`vss token`).

Claims: ``sub`` (user id), ``org`` (organisation id), ``org_name``, ``principal``
(region | municipality | other), ``roles`` (coordinator, manager, analyst, operator).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from services.shared.settings import AuthSettings

ROLES = frozenset({"coordinator", "manager", "analyst", "operator"})
PRINCIPALS = frozenset({"region", "municipality", "other"})
EMBEDDED_KEY_FILE = Path("keys") / "jwt-hs256.secret"


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not signed by our key."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    organisation_id: str
    organisation_name: str
    principal: str
    roles: frozenset[str]


def secret_file(path: Path) -> str:
    """A random secret kept in ``path``, created (mode 0600) on first use.

    Two processes starting together both end up with the one that was written first.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def embedded_key(data_dir: Path) -> str:
    """The HS256 secret of the embedded defaults, created (mode 0600) on first use."""
    return secret_file(data_dir / EMBEDDED_KEY_FILE)


@dataclass(frozen=True, slots=True)
class TokenService:
    key: str
    algorithm: str
    issuer: str
    audience: str

    @classmethod
    def from_settings(cls, settings: AuthSettings, data_dir: Path) -> TokenService:
        key = settings.jwt_key.get_secret_value() if settings.jwt_key else embedded_key(data_dir)
        return cls(key, settings.jwt_algorithm, settings.jwt_issuer, settings.jwt_audience)

    def verify(self, token: str) -> TokenClaims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not set(roles) <= ROLES:
            raise InvalidToken(f"roles must be a list drawn from {sorted(ROLES)}")
        principal = claims.get("principal")
        org = claims.get("org")
        if principal not in PRINCIPALS or not isinstance(org, str) or not org:
            raise InvalidToken("the token needs an org and a principal (region, municipality or other)")
        return TokenClaims(
            user_id=str(claims["sub"]),
            organisation_id=org,
            organisation_name=str(claims.get("org_name") or org),
            principal=principal,
            roles=frozenset(roles),
        )

    def mint(
        self,
        *,
        user_id: str,
        organisation_id: str,
        principal: str,
        roles: list[str],
        organisation_name: str | None = None,
        lifetime: timedelta = timedelta(hours=12),
    ) -> str:
        if principal not in PRINCIPALS:
            raise ValueError(f"principal must be one of {sorted(PRINCIPALS)}")
        unknown = set(roles) - ROLES
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {sorted(ROLES)}")
        now = datetime.now(UTC)
        payload = {
            "sub": user_id,
            "org": organisation_id,
            "org_name": organisation_name or organisation_id,
            "principal": principal,
            "roles": roles,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime,
        }
        return jwt.encode(payload, self.key, algorithm=self.algorithm)
