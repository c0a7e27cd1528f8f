"""Settings of the sharing service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.shared.bus.names import BusNames
from services.shared.bus.relay import RelaySettings
from services.shared.settings import BusSettings, CommonSettings, sqlite_under


class SharingSettings(CommonSettings, BusSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    sharing_store_url: str | None = Field(
        default=None, description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory"
    )
    sharing_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve /metrics on this port (unset: not served)"
    )
    share_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    # How its relay publishes to VSS_SHARE: the same settings (and names) as the case relay's.
    relay_lease_ttl: float = Field(default=10.0, gt=0.5, description="Seconds a dead relay holds the lease")
    relay_ack_timeout: float = Field(default=5.0, gt=0, description="Longest wait for one publish ack")
    relay_poll_interval: float = Field(default=0.01, gt=0, description="SQLite: how often to look for news")
    relay_max_in_flight: int = Field(default=2000, ge=1, le=4000, description="Publishes awaiting their ack")

    def store_url(self) -> str:
        return self.sharing_store_url or sqlite_under(self.data_dir, "sharing.sqlite")

    def relay_settings(self) -> RelaySettings:
        return RelaySettings(
            names=self.share_names(),
            replicas=self.nats_replicas,
            lease_ttl=self.relay_lease_ttl,
            ack_timeout=self.relay_ack_timeout,
            idle_wait=self.relay_poll_interval,
            max_in_flight=self.relay_max_in_flight,
        )

    def share_names(self) -> BusNames:
        from services.sharing.infrastructure.bus import share_bus_names  # noqa: PLC0415

        return share_bus_names(self.share_stream_prefix, self.bus_names())
