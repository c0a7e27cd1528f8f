"""Settings of the projections service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.projections.application.projector import KEPT_VIEWS
from services.shared.bus.names import BusNames
from services.shared.settings import (
    AccessLogSettings,
    BusSettings,
    CommonSettings,
    PlanLinkSettings,
    key_or_file,
    position_max_waits,
    position_wait_limit,
    sqlite_under,
)
from vss_contracts.meeting_events import MEETING_STREAM, MEETING_SUBJECT_PREFIX
from vss_contracts.notification_events import NOTIFICATION_STREAM, NOTIFICATION_SUBJECT_PREFIX


class ProjectionsSettings(CommonSettings, BusSettings, AccessLogSettings, PlanLinkSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    read_model_url: str | None = Field(
        default=None,
        description="sqlite:///DIRECTORY or postgresql://…; unset: SQLite files under the data directory",
    )
    projector_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve /metrics on this port (unset: not served)"
    )
    query_host: str = "127.0.0.1"
    query_port: int = 8001
    query_wait_limit: float = position_wait_limit("a query")
    query_max_waits: int = position_max_waits("queries")
    caseload_limit: int = Field(
        default=25, ge=1, description="Active cases above which a caseload is flagged"
    )
    due_within_days: int = Field(default=14, ge=0, description="A follow-up this close counts as due")
    rebuild_kept_views: int = Field(
        default=KEPT_VIEWS,
        ge=1,
        le=10_000_000,
        description="Case views a rebuild keeps in memory; the least recently changed beyond are"
        " written to the new copy and read back at their case's next event",
    )
    case_host: str = "127.0.0.1"
    case_port: int = Field(default=8000, ge=1, le=65535)
    case_api_url: str | None = Field(
        default=None,
        description="The case API the client's pages send the client's own commands to"
        " (unset: http://VSS_CASE_HOST:VSS_CASE_PORT)",
    )
    notifications_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    meetings_stream_prefix: str = Field(default="", description="Only for tests on a shared server")

    def case_api(self) -> str:
        return (self.case_api_url or f"http://{self.case_host}:{self.case_port}").rstrip("/")

    def page_key(self) -> bytes:
        """The key of the client pages' form tokens (a file under the data directory, made on
        first use, shared by every query API process of one data directory)."""
        return key_or_file(None, self.data_dir, "client-pages.secret")

    def read_models(self) -> str:
        return self.read_model_url or sqlite_under(self.data_dir, "projections")

    def notification_names(self) -> BusNames:
        """The delivery record's stream (``VSS_NOTIFICATIONS``; the notifications service declares it)."""
        return self.bus_names().sibling(
            NOTIFICATION_STREAM, NOTIFICATION_SUBJECT_PREFIX, self.notifications_stream_prefix
        )

    def meeting_names(self) -> BusNames:
        """Each case's meeting schedule (``VSS_MEETINGS``; the meetings service declares it)."""
        return self.bus_names().sibling(MEETING_STREAM, MEETING_SUBJECT_PREFIX, self.meetings_stream_prefix)
