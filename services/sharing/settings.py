"""Settings of the sharing service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.shared.bus.names import BusNames
from services.shared.settings import BusSettings, CommonSettings


class SharingSettings(CommonSettings, BusSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    sharing_store_url: str | None = Field(
        default=None, description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory"
    )
    share_stream_prefix: str = Field(default="", description="Only for tests on a shared server")

    def store_url(self) -> str:
        if self.sharing_store_url:
            return self.sharing_store_url
        return f"sqlite:///{(self.data_dir / 'sharing.sqlite').resolve()}"

    def share_names(self) -> BusNames:
        from services.sharing.infrastructure.bus import share_bus_names  # noqa: PLC0415

        return share_bus_names(self.share_stream_prefix, self.bus_names())
