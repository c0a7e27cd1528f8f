"""Settings of the case service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.case.infrastructure.signing import CommitSigner, Keyring
from services.shared.settings import AccessLogSettings, BusSettings, CommonSettings, sqlite_under


class CaseSettings(CommonSettings, AccessLogSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    case_store_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://…; unset: SQLite under the data directory",
    )
    case_host: str = "127.0.0.1"
    case_port: int = 8000
    follow_up_max_months: int = Field(default=3, ge=1, le=12, description="Longest SIP follow-up interval")
    signing_key_dir: Path | None = Field(
        default=None,
        description="Directory of the commit signing keys (<key id>.pem, current, keys.json);"
        " unset: <data dir>/case/signing, with a key created on first use. A directory set here"
        " must hold a key already (`vss keys rotate` creates one)",
    )
    signing_key_id: str | None = Field(
        default=None,
        description="The key (a <key id>.pem in signing_key_dir) that signs new commits;"
        " unset: the one the directory's `current` file names",
    )

    def store_url(self) -> str:
        return self.case_store_url or sqlite_under(self.data_dir, "case", "events.sqlite")

    def keyring(self) -> Keyring:
        return Keyring(self.signing_key_dir or self.data_dir / "case" / "signing", self.signing_key_id)

    def commit_signer(self) -> CommitSigner:
        """The key new commits are signed with (:class:`SigningKeyMissing` if there is none)."""
        keyring = self.keyring()
        return keyring.signer() if self.signing_key_dir is not None else keyring.ensure()


class CaseRelaySettings(CaseSettings, BusSettings):
    """The relay process: the case store (as above), the bus, and how to publish."""

    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    relay_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve /metrics on this port (unset: not served)"
    )
    relay_lease_ttl: float = Field(default=10.0, gt=0.5, description="Seconds a dead relay holds the lease")
    relay_ack_timeout: float = Field(default=5.0, gt=0, description="Longest wait for one publish ack")
    relay_poll_interval: float = Field(
        default=0.01, gt=0, description="SQLite: how often to look for new events without wake-ups"
    )
    relay_max_in_flight: int = Field(
        default=2000,
        ge=1,
        le=4000,
        description="Messages published and awaiting their ack (a batch counts all of its messages)",
    )
