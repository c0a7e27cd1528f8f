"""The bearer-token check every API shares: a verified token's claims, or a 401 problem."""

from __future__ import annotations

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.shared.auth import InvalidToken, KeysUnavailable, TokenClaims, TokenService
from services.shared.problems import ProblemException
from services.shared.worker_threads import in_worker_thread

bearer = HTTPBearer(auto_error=False, description="JWT from `vss token` or your identity provider")


def verified_claims(tokens: TokenService, credentials: HTTPAuthorizationCredentials | None) -> TokenClaims:
    if credentials is None:
        raise ProblemException(
            401,
            "Unauthorized",
            "send Authorization: Bearer <token>",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return tokens.verify(credentials.credentials)
    except InvalidToken as error:
        raise ProblemException(
            401,
            "Unauthorized",
            f"invalid bearer token: {error}",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    except KeysUnavailable as error:
        raise ProblemException(
            503,
            "Service Unavailable",
            f"the identity provider's keys cannot be fetched now: {error}",
            code="keys_unavailable",
            headers={"Retry-After": "5"},
        ) from None


async def verified_claims_async(
    tokens: TokenService, credentials: HTTPAuthorizationCredentials | None
) -> TokenClaims:
    """:func:`verified_claims` for an ``async`` dependency: a token verified lately is answered
    on the event loop; any other is verified in a worker thread (a JWKS fetch blocks)."""
    if credentials is not None:
        kept = tokens.kept(credentials.credentials)
        if kept is not None:
            return kept
    return await in_worker_thread(verified_claims, tokens, credentials)
