"""Settings of the case service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.shared.settings import CommonSettings


class CaseSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    case_store_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://…; unset: SQLite under the data directory",
    )
    case_host: str = "127.0.0.1"
    case_port: int = 8000
    follow_up_max_months: int = Field(default=3, ge=1, le=12, description="Longest SIP follow-up interval")

    def store_url(self) -> str:
        if self.case_store_url:
            return self.case_store_url
        return f"sqlite:///{(self.data_dir / 'case' / 'events.sqlite').resolve()}"
