"""Settings every service shares, read from VSS_* environment variables.

Each service's composition root builds its settings once, at start-up; nothing reads
configuration at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.names import BusNames
from services.shared.plan_links import MIN_KEY_BYTES, PlanLinkKeyTooShort


class AuthSettings(BaseSettings):
    """How bearer tokens are verified (and, for the embedded defaults, minted)."""

    model_config = SettingsConfigDict(env_prefix="VSS_AUTH_", extra="ignore")

    jwt_key: SecretStr | None = Field(
        default=None,
        description="HMAC secret, or a PEM public key for RS256/ES256/EdDSA. "
        "Unset: the embedded key file under the data directory is used (created on first use).",
    )
    jwt_algorithm: str = Field(
        default="HS256", description="Algorithm of jwt_key (an HS256 key: 32 bytes or more)"
    )
    jwt_issuer: str = "vss"
    jwt_audience: str = "vss"
    max_token_lifetime_hours: float = Field(
        default=12,
        gt=0,
        description="Longest token accepted: exp - iat, or (a token without iat) exp - now",
    )
    jwks_url: str | None = Field(
        default=None,
        description="The identity provider's JWKS (its OIDC discovery's jwks_uri). Tokens with a kid are"
        " verified with its keys (cached, refetched once on an unknown kid), beside jwt_key if set",
    )
    jwks_algorithms: list[str] = Field(
        default=["RS256", "ES256"], description="Algorithms accepted for keys of the JWKS"
    )
    client_acr: list[str] = Field(
        default=[
            "http://id.elegnamnden.se/loa/1.0/loa3",
            "http://id.elegnamnden.se/loa/1.0/loa4",
        ],
        min_length=1,
        description="Assurance levels (the token's acr) accepted of a client's citizen e-ID sign-in",
    )
    jwks_cache_seconds: float = Field(default=300, gt=0, description="How long the fetched JWKS is kept")
    jwks_refetch_cooldown_seconds: float = Field(
        default=30, ge=0, description="Least time between two refetches for an unknown kid"
    )


def sqlite_under(data_dir: Path, *parts: str) -> str:
    """The SQLite URL of a file (or directory of files) under the data directory: where a
    store is when its URL is not set."""
    return f"sqlite:///{data_dir.joinpath(*parts).resolve()}"


def key_or_file(setting: str | None, data_dir: Path, name: str) -> bytes:
    """A key: the setting, else the random one kept in ``<data dir>/keys/<name>``, made on first use."""
    from services.shared.auth import secret_file  # noqa: PLC0415 (auth imports these settings)

    return (setting or secret_file(data_dir / "keys" / name)).encode()


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    data_dir: Path = Field(default=Path(".vss"), description="Data of the embedded defaults")
    log_level: str = "INFO"
    log_json: bool = False
    log_requests: bool = Field(
        default=False,
        description="A log line per HTTP request (uvicorn's); off, the access log, traces and"
        " /metrics still say who asked what (ADR 0026)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Where a part without an API serves /metrics (its own VSS_*_METRICS_PORT)",
    )
    nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="How far this process yields the CPU to the others: its niceness increment,"
        " applied at start (vss up sets it to VSS_BACKGROUND_NICE for the parts whose work may wait)",
    )
    background_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="vss up: the niceness increment of the parts whose work may wait behind"
        " requests (the projector, the meetings and sharing services: ADR 0029); 0: none",
    )


FIVE_YEARS_IN_DAYS = 1827  # 5 × 365 + 2 leap days


class AccessLogSettings(BaseSettings):
    """The one access log every API that serves a case's data records to."""

    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    data_dir: Path = Field(default=Path(".vss"), description="Data of the embedded defaults")
    access_log_url: str | None = Field(
        default=None,
        description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory."
        " Kept apart from the read models: they can be rebuilt, the access log cannot.",
    )
    access_log_retention_days: int = Field(
        default=FIVE_YEARS_IN_DAYS,
        ge=FIVE_YEARS_IN_DAYS,
        description="How long access-log records are kept (at least five years)",
    )
    access_stream: str = Field(default="VSS_ACCESS", description="Stream the access log is published on")
    access_subject_prefix: str = "vss.access"

    def access_log(self) -> str:
        return self.access_log_url or sqlite_under(self.data_dir, "projections", "access-log.sqlite")


class OrganisationsSettings(BaseSettings):
    """The organisations file (services/shared/organisations.py): who VSS shares with."""

    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore", populate_by_name=True)

    organisations: Path | None = Field(
        default=None,
        # One file for every part: the notifications service's older name reads the same file.
        validation_alias=AliasChoices("VSS_ORGANISATIONS", "VSS_NOTIFY_ORGANISATIONS"),
        description="JSON: per organisation id its name, NATS user (nats) and notifications (webhook, duty)."
        " Unset: no organisation (vss up: the demo organisations)",
    )


class DateWindowSettings(BaseSettings):
    """How far around today the dates a client sends may lie (the case and meetings APIs)."""

    model_config = SettingsConfigDict(env_prefix="VSS_DATE_WINDOW_", extra="ignore")

    past_days: int = Field(
        default=3653, ge=0, le=36_500, description="Days before today a date may lie (default ten years)"
    )
    future_days: int = Field(
        default=1827, ge=0, le=36_500, description="Days after today a date may lie (default five years)"
    )


EMBEDDED_NATS_PORT = 4422  # not 4222: a machine's own NATS may hold the standard port


class BusSettings(BaseSettings):
    """Where the bus is. Unset: the embedded nats-server `vss up` starts."""

    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    nats_url: str | None = Field(
        default=None, description="NATS server (JetStream enabled); unset: the embedded one on nats_port"
    )
    nats_replicas: int = Field(default=1, ge=1, le=5, description="Replicas of streams the services declare")
    nats_port: int = Field(default=EMBEDDED_NATS_PORT, description="Port of the embedded nats-server")
    nats_monitor_port: int = Field(default=8422, description="Monitoring port of the embedded nats-server")
    nats_nkey_seed_file: Path | None = Field(
        default=None,
        description="This process's NATS user: a file holding its nkey seed (SU…), 0600. Unset (and no"
        " creds file): no credentials, for a server without authorization",
    )
    nats_creds_file: Path | None = Field(
        default=None, description="This process's NATS user as a JWT .creds file (servers in operator mode)"
    )
    # Every relay over an SQLite store (the case store's, and the meetings, notifications and
    # sharing outboxes') wakes on its store's commits (ADR 0004, decision 9).
    relay_wake: bool = Field(
        default=True,
        description="SQLite: wake on each commit (a datagram on <store>.relay-wake) instead of"
        " waiting for the poll",
    )
    relay_wake_poll_interval: float = Field(
        default=0.1,
        gt=0,
        le=5,
        description="SQLite with the wake socket bound: how often to look anyway"
        " (the longest a lost wake-up delays an event)",
    )
    # Other stream and subject names than the contracts' (only for tests on a shared server).
    bus_stream: str | None = None
    bus_subject_prefix: str | None = None
    bus_dead_letter_stream: str | None = None
    bus_dead_letter_prefix: str | None = None

    def nats(self) -> str:
        """The NATS URL to use: the one given, else the embedded server's."""
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    def nats_auth(self) -> NatsAuth:
        """How this process proves who it is to the server (nothing when neither file is set)."""
        return NatsAuth(seed_file=self.nats_nkey_seed_file, creds_file=self.nats_creds_file)

    @property
    def nats_embedded(self) -> bool:
        return not self.nats_url

    def bus_names(self) -> BusNames:
        defaults = BusNames()
        return BusNames(
            stream=self.bus_stream or defaults.stream,
            subject_prefix=self.bus_subject_prefix or defaults.subject_prefix,
            dead_letter_stream=self.bus_dead_letter_stream or defaults.dead_letter_stream,
            dead_letter_prefix=self.bus_dead_letter_prefix or defaults.dead_letter_prefix,
        )


def position_wait_limit(what: str) -> Any:
    """The setting of the longest wait of ``what`` for ``?position=`` (seconds)."""
    return Field(default=5.0, gt=0, le=60, description=f"Longest wait of {what} for ?position= (seconds)")


def position_max_waits(what: str) -> Any:
    """The setting of how many ``what`` may wait for ``?position=`` at once."""
    return Field(
        default=32,
        ge=1,
        le=10_000,
        description=f"Most {what} waiting for ?position= at once (one more: 503 with Retry-After)",
    )


def settings_error(error: ValidationError) -> str:
    """One line naming each bad VSS_* variable and the rule it breaks."""
    prefix = "VSS_"
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        env = f"{prefix}{field.upper()}"
        if error.title == "AuthSettings":
            env = f"{prefix}AUTH_{field.upper()}"
        elif error.title == "DateWindowSettings":
            env = f"{prefix}DATE_WINDOW_{field.upper()}"
        problems.append(f"{env}: {item['msg']}")
    return "invalid settings: " + "; ".join(problems)


class PlanLinkSettings(BaseSettings):
    """The plan links' key and base URL (ADR 0016): the same for the notifications service, which
    writes the links, and the query API, which checks them."""

    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    data_dir: Path = Field(default=Path(".vss"), description="Data of the embedded defaults")
    plan_link_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of plan links (at least 32 bytes); unset: a key file in the data"
        " directory. Changing it revokes every plan link.",
    )
    plan_link_base_url: str = Field(
        default="http://127.0.0.1:8001", description="The query API as the people named in a plan reach it"
    )

    def plan_link_signing_key(self) -> bytes:
        """The setting, else ``<data dir>/keys/plan-links.key``, made on first use."""
        if self.plan_link_key is not None:
            key = self.plan_link_key.get_secret_value().encode()
            if len(key) < MIN_KEY_BYTES:
                raise PlanLinkKeyTooShort(f"VSS_PLAN_LINK_KEY must be at least {MIN_KEY_BYTES} bytes")
            return key
        return key_or_file(None, self.data_dir, "plan-links.key")
