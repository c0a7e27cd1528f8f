"""Settings every service shares, read from VSS_* environment variables.

Each service's composition root builds its settings once, at start-up; nothing reads
configuration at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    """How bearer tokens are verified (and, for the embedded defaults, minted)."""

    model_config = SettingsConfigDict(env_prefix="VSS_AUTH_", extra="ignore")

    jwt_key: SecretStr | None = Field(
        default=None,
        description="HMAC secret, or a PEM public key for RS256/ES256/EdDSA. "
        "Unset: the embedded key file under the data directory is used (created on first use).",
    )
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "vss"
    jwt_audience: str = "vss"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    data_dir: Path = Field(default=Path(".vss"), description="Data of the embedded defaults")
    log_level: str = "INFO"
    log_json: bool = False
