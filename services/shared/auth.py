"""Bearer JWTs: verification for the APIs, minting for the embedded defaults (`vss token`).

Staff tokens: ``sub`` (user id), ``org`` (organisation id), ``org_name``, ``principal``
(region | municipality | other), ``roles`` (coordinator, manager, analyst, operator).
A person is the pair (``org``, ``sub``): both must be non-empty.

Client tokens (the person the case is about, signed in with a citizen e-ID through the
identity provider): ``roles`` exactly ``["client"]``, the personal identity number in
``https://id.oidc.se/claim/personalIdentityNumber`` (the Swedish OIDC claims profile), an
``acr`` among ``VSS_AUTH_CLIENT_ACR`` (default: assurance level 3 or 4, *tillitsnivå*), and no
``org`` or ``principal``. A client is their personal identity number: it is the reader's
user id, their organisation is none (``""``) and their principal ``client``.

Keys: a static key (``VSS_AUTH_JWT_KEY``: an HMAC secret of at least 32 bytes, or a PEM
public key), an identity provider's JWKS (``VSS_AUTH_JWKS_URL``: tokens naming a ``kid``
are verified with its keys, fetched by PyJWT's own ``PyJWKClient``, cached and refetched
once on an unknown ``kid``), or both. A key that does not fit its algorithm stops the
service at start (:class:`TokenKeyInvalid`, a one-line reason).

Lifetime: a token whose ``exp - iat`` exceeds ``VSS_AUTH_MAX_TOKEN_LIFETIME_HOURS``, or,
without ``iat``, whose ``exp`` is further than that from now, is refused.

A client sends the same token with every request until it expires: a verified token's
claims are kept (:class:`VerifiedTokens`) until its ``exp`` and at most
:data:`VERIFIED_TOKEN_SECONDS` (a key withdrawn from the identity provider's JWKS stops
counting as soon as without them, give or take that long), so a request verifies a
signature once a minute, not every time. A refused token is never kept.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from services.shared.access import CLIENT_PRINCIPAL
from services.shared.settings import AuthSettings
from vss_contracts import InvalidPersonalIdentityNumber, normalise_personal_identity_number

ROLES = frozenset({"coordinator", "manager", "analyst", "operator"})
PRINCIPALS = frozenset({"region", "municipality", "other"})
CLIENT_ROLE = "client"
PERSONAL_IDENTITY_NUMBER_CLAIM = "https://id.oidc.se/claim/personalIdentityNumber"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"  # *tillitsnivå 3*: what minted client tokens claim
EMBEDDED_KEY_FILE = Path("keys") / "jwt-hs256.secret"
MIN_HMAC_KEY_BYTES = 32
DEFAULT_MAX_LIFETIME = timedelta(hours=12)
VERIFIED_TOKEN_SECONDS = 60.0  # the longest a verified token's claims are kept
VERIFIED_TOKENS_KEPT = 4096  # tokens kept at most; the oldest go first


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not signed by our key."""


class KeysUnavailable(Exception):
    """The identity provider's JWKS could not be fetched: no token with a kid can be checked now."""


class TokenKeyInvalid(Exception):
    """The configured key cannot verify tokens (too short, or not a key of its algorithm): a start error."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def check_key(key: str, algorithm: str) -> None:
    """Raise :class:`TokenKeyInvalid` unless ``key`` is a usable key of ``algorithm``."""
    if algorithm == "none" or algorithm not in jwt.algorithms.get_default_algorithms():
        raise TokenKeyInvalid(f"VSS_AUTH_JWT_ALGORITHM {algorithm!r} is not a signing algorithm")
    try:
        jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as error:
        raise TokenKeyInvalid(f"VSS_AUTH_JWT_KEY is not a {algorithm} key: {_one_line(error)}") from None
    if algorithm.startswith("HS") and len(key.encode()) < MIN_HMAC_KEY_BYTES:
        raise TokenKeyInvalid(
            f"VSS_AUTH_JWT_KEY is {len(key.encode())} bytes; an {algorithm} key needs at least"
            f" {MIN_HMAC_KEY_BYTES}"
        )


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    organisation_id: str
    organisation_name: str
    principal: str
    roles: frozenset[str]

    @property
    def is_client(self) -> bool:
        """The case's own client, by personal identity number (``user_id``), not staff."""
        return self.principal == CLIENT_PRINCIPAL


class VerifiedTokens:
    """Claims of tokens verified lately, each until its own deadline (its ``exp`` or sooner).

    Only a token verified in full gets here; a hit is the claims that verification gave.
    Thread-safe: sync dependencies verify in the thread pool.
    """

    def __init__(self, kept: int = VERIFIED_TOKENS_KEPT) -> None:
        self._kept = kept
        self._claims: dict[str, tuple[float, TokenClaims]] = {}
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> TokenClaims | None:
        found = self._claims.get(token)
        if found is None:
            return None
        if now < found[0]:
            return found[1]
        with self._lock:
            self._claims.pop(token, None)
        return None

    def keep(self, token: str, claims: TokenClaims, until: float) -> None:
        with self._lock:
            if len(self._claims) >= self._kept:
                for old in list(self._claims)[: max(1, self._kept // 4)]:  # the oldest quarter
                    del self._claims[old]
            self._claims[token] = (until, claims)


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
    key: str | None  # None: only the identity provider's JWKS
    algorithm: str
    issuer: str
    audience: str
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME
    jwks: PyJWKClient | None = None
    jwks_algorithms: tuple[str, ...] = ("RS256", "ES256")
    client_acr: frozenset[str] = frozenset({LOA3, "http://id.elegnamnden.se/loa/1.0/loa4"})
    verified: VerifiedTokens = field(default_factory=VerifiedTokens, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.key is not None:
            check_key(self.key, self.algorithm)
        elif self.jwks is None:
            raise TokenKeyInvalid("no key: set VSS_AUTH_JWT_KEY or VSS_AUTH_JWKS_URL")
        unfit = [a for a in self.jwks_algorithms if a == "none" or a.startswith("HS")]
        if unfit:
            raise TokenKeyInvalid(f"VSS_AUTH_JWKS_ALGORITHMS must be public-key algorithms, not {unfit}")

    @classmethod
    def from_settings(cls, settings: AuthSettings, data_dir: Path) -> TokenService:
        """The service the settings describe; :class:`TokenKeyInvalid` if its key cannot work."""
        if settings.jwt_key:
            key: str | None = settings.jwt_key.get_secret_value()
        else:
            key = None if settings.jwks_url else embedded_key(data_dir)
        jwks = None
        if settings.jwks_url:
            # Not cache_keys: its per-kid cache ignores the lifespan (a key withdrawn by the
            # provider would verify until evicted); the key set itself is cached for the lifespan.
            jwks = PyJWKClient(
                settings.jwks_url,
                cache_jwk_set=True,
                lifespan=settings.jwks_cache_seconds,
                cooldown_duration=settings.jwks_refetch_cooldown_seconds,
                timeout=10,
            )
        return cls(
            key,
            settings.jwt_algorithm,
            settings.jwt_issuer,
            settings.jwt_audience,
            max_lifetime=timedelta(hours=settings.max_token_lifetime_hours),
            jwks=jwks,
            jwks_algorithms=tuple(settings.jwks_algorithms),
            client_acr=frozenset(settings.client_acr),
        )

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        kid = header.get("kid")
        if self.jwks is not None and kid is not None:
            try:
                signing = self.jwks.get_signing_key(str(kid))
            except PyJWKClientConnectionError as error:
                raise KeysUnavailable(_one_line(error)) from error
            except PyJWKClientError as error:  # no key of that kid
                raise InvalidToken(_one_line(error)) from error
            except (jwt.PyJWTError, ValueError) as error:
                # The provider answered with no usable key set (empty, not JSON, a bad key):
                # its fault, not the token's; a 503 to try again, never a 500.
                raise KeysUnavailable(
                    f"the identity provider's key set is unusable: {_one_line(error)}"
                ) from error
            algorithm = signing.algorithm_name
            if algorithm not in self.jwks_algorithms or header.get("alg") != algorithm:
                raise InvalidToken(f"the token's alg {header.get('alg')!r} does not fit key {kid!r}")
            return signing.key, [algorithm]
        if self.key is None:
            raise InvalidToken("the token names no key (kid) of the identity provider's JWKS")
        return self.key, [self.algorithm]

    def kept(self, token: str) -> TokenClaims | None:
        """The claims of ``token`` if it was verified lately and has not expired: no work, no I/O."""
        return self.verified.get(token, time.time())

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; :class:`InvalidToken` (or :class:`KeysUnavailable`) if it is refused.

        May fetch the identity provider's key set (blocking I/O): call it from a thread."""
        now = time.time()
        kept = self.verified.get(token, now)
        if kept is not None:
            return kept
        claims, expires = self._verify(token)
        # PyJWT refuses a token once now >= exp: kept no longer than that.
        self.verified.keep(token, claims, min(expires, now + VERIFIED_TOKEN_SECONDS))
        return claims

    def _verify(self, token: str) -> tuple[TokenClaims, float]:
        """The claims of a token verified in full (signature, audience, issuer, times), and its exp."""
        key, algorithms = self._key_for(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as error:
            raise InvalidToken(_one_line(error)) from error
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.strip():
            raise InvalidToken("the token's sub (the user id) is empty")
        iat = claims.get("iat")
        lifetime = float(claims["exp"]) - (float(iat) if iat is not None else time.time())
        if lifetime > self.max_lifetime.total_seconds():
            most = self.max_lifetime.total_seconds() / 3600
            raise InvalidToken(f"the token lives {lifetime / 3600:.1f} h; at most {most:g} h are accepted")
        expires = float(claims["exp"])
        roles = claims.get("roles", [])
        if isinstance(roles, list) and CLIENT_ROLE in roles:
            return self._client(claims, roles), expires
        if not isinstance(roles, list) or not set(roles) <= ROLES:
            raise InvalidToken(f"roles must be a list drawn from {sorted(ROLES)}, or exactly ['client']")
        principal = claims.get("principal")
        org = claims.get("org")
        if principal not in PRINCIPALS or not isinstance(org, str) or not org.strip():
            raise InvalidToken("the token needs an org and a principal (region, municipality or other)")
        staff = TokenClaims(
            user_id=sub,
            organisation_id=org,
            organisation_name=str(claims.get("org_name") or org),
            principal=principal,
            roles=frozenset(roles),
        )
        return staff, expires

    def _client(self, claims: dict[str, Any], roles: list[Any]) -> TokenClaims:
        """A client's token: only the client role, a valid personal identity number, enough assurance."""
        if roles != [CLIENT_ROLE]:
            raise InvalidToken("a client token carries the role client and no other")
        if "org" in claims or "principal" in claims:
            raise InvalidToken("a client token names no org or principal: a client acts for no organisation")
        acr = claims.get("acr")
        if acr not in self.client_acr:
            raise InvalidToken(
                f"a client token needs an acr among {sorted(self.client_acr)} (VSS_AUTH_CLIENT_ACR);"
                f" got {acr!r}"
            )
        number = claims.get(PERSONAL_IDENTITY_NUMBER_CLAIM)
        try:
            pin = normalise_personal_identity_number(number) if isinstance(number, str) else None
        except InvalidPersonalIdentityNumber as error:
            raise InvalidToken(f"{PERSONAL_IDENTITY_NUMBER_CLAIM}: {error}") from None
        if pin is None:
            raise InvalidToken(f"a client token needs {PERSONAL_IDENTITY_NUMBER_CLAIM} (a string)")
        return TokenClaims(
            user_id=pin,
            organisation_id="",
            organisation_name="",
            principal=CLIENT_PRINCIPAL,
            roles=frozenset({CLIENT_ROLE}),
        )

    def mint_client(self, personal_identity_number: str, *, lifetime: timedelta | None = None) -> str:
        """A client's token as the identity provider would issue it after an e-ID sign-in."""
        try:
            pin = normalise_personal_identity_number(personal_identity_number)
        except InvalidPersonalIdentityNumber as error:
            raise ValueError(f"personal identity number: {error}") from None
        return self._sign(
            {"sub": pin, PERSONAL_IDENTITY_NUMBER_CLAIM: pin, "roles": [CLIENT_ROLE], "acr": LOA3}, lifetime
        )

    def _sign(self, claims: dict[str, Any], lifetime: timedelta | None) -> str:
        if self.key is None:
            raise ValueError("no static key to mint with; tokens come from the identity provider")
        lifetime = self.max_lifetime if lifetime is None else lifetime
        if lifetime > self.max_lifetime:
            raise ValueError(f"a token may live at most {self.max_lifetime}")
        now = datetime.now(UTC)
        payload = {**claims, "iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + lifetime}
        return jwt.encode(payload, self.key, algorithm=self.algorithm)

    def mint(
        self,
        *,
        user_id: str,
        organisation_id: str,
        principal: str,
        roles: list[str],
        organisation_name: str | None = None,
        lifetime: timedelta | None = None,
    ) -> str:
        """A token signed with the static key (lifetime: the longest accepted, unless shorter is asked)."""
        if not user_id.strip() or not organisation_id.strip():
            raise ValueError("a token needs a user id and an organisation id")
        if principal not in PRINCIPALS:
            raise ValueError(f"principal must be one of {sorted(PRINCIPALS)}")
        unknown = set(roles) - ROLES
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {sorted(ROLES)}")
        claims = {
            "sub": user_id,
            "org": organisation_id,
            "org_name": organisation_name or organisation_id,
            "principal": principal,
            "roles": roles,
        }
        return self._sign(claims, lifetime)
