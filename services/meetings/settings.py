"""Settings of the meetings service (VSS_* environment variables), read once at start-up.

Every threshold of the method's rhythm is a setting; the defaults are the method's.
"""

from __future__ import annotations

from datetime import time

from pydantic import EmailStr, Field
from pydantic_settings import SettingsConfigDict

from services.meetings.application.service import KEPT_SCHEDULES
from services.meetings.domain.schedule import DEFAULT_CADENCE, Rules
from services.shared.bus.names import BusNames
from services.shared.settings import (
    AccessLogSettings,
    BusSettings,
    CommonSettings,
    key_or_file,
    position_max_waits,
    position_wait_limit,
    sqlite_under,
)
from vss_contracts.types import ContactPeriod


class MeetingsSettings(CommonSettings, BusSettings, AccessLogSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    meetings_store_url: str | None = Field(
        default=None, description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory"
    )
    meetings_host: str = "127.0.0.1"
    meetings_port: int = 8002
    meetings_wait_limit: float = position_wait_limit("a meetings request")
    meetings_max_waits: int = position_max_waits("meetings requests")
    meetings_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    meetings_kept_schedules: int = Field(
        default=KEPT_SCHEDULES,
        ge=0,
        le=1_000_000,
        description="Schedules kept in memory between batches of case events (about 50 KiB each);"
        " a case event of a schedule not kept loads its snapshot",
    )
    meeting_time: time = Field(default=time(10, 0), description="Local time (Europe/Stockholm) of meetings")
    meeting_minutes: int = Field(default=60, ge=15, le=480)
    first_meeting_within_days: int = Field(default=21, ge=1, le=90)
    reminder_days: tuple[int, ...] = Field(default=(7, 1), description="Reminders this many days before")
    change_rating_days_before: int = Field(default=7, ge=0, le=60)
    # At least one contact with the client within this many days, per contact period (ADR 0019).
    cadence_assessment_days: int = Field(default=DEFAULT_CADENCE[ContactPeriod.ASSESSMENT], ge=1, le=31)
    cadence_orientation_days: int = Field(default=DEFAULT_CADENCE[ContactPeriod.ORIENTATION], ge=1, le=31)
    cadence_social_recovery_days: int = Field(
        default=DEFAULT_CADENCE[ContactPeriod.SOCIAL_RECOVERY], ge=1, le=62
    )
    cadence_re_orientation_days: int = Field(
        default=DEFAULT_CADENCE[ContactPeriod.RE_ORIENTATION], ge=1, le=92
    )
    cadence_grace_working_days: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Working days to record an interval's contacts before it is judged",
    )
    crisis_within_working_days: int = Field(default=2, ge=1, le=10)
    propose_first_meeting: bool = Field(
        default=True,
        description="The first resource group meeting is proposed and a coordinator confirms it (ADR 0020)",
    )
    timer_interval: float = Field(default=30.0, gt=0, description="Seconds between looks for due timers")
    organiser_name: str = "VSS vård- och stödsamordning"
    organiser_email: EmailStr = "noreply@vss.example.se"
    public_meetings_url: str = Field(
        default="http://127.0.0.1:8002", description="The meetings API as calendar apps reach it"
    )
    calendar_link_key: str | None = Field(
        default=None, description="HMAC key of calendar feed links; unset: a key file in the data directory"
    )

    answer_link_key: str | None = Field(
        default=None,
        description="HMAC key of the invitees' answer links (the notifications service needs the same);"
        " unset: a key file in the data directory",
    )

    def answer_key(self) -> bytes:
        """The answer links' key (ADR 0020): the setting, else a key file made on first use.

        Changing it revokes every answer link handed out."""
        return key_or_file(self.answer_link_key, self.data_dir, "answer-links.key")

    def feed_key(self) -> bytes:
        """The calendar feed links' key: the setting, else a key file made on first use.

        Changing it revokes every feed link handed out.
        """
        return key_or_file(self.calendar_link_key, self.data_dir, "calendar-links.key")

    def store_url(self) -> str:
        return self.meetings_store_url or sqlite_under(self.data_dir, "meetings.sqlite")

    def rules(self) -> Rules:
        return Rules(
            first_meeting_within_days=self.first_meeting_within_days,
            meeting_time=self.meeting_time,
            meeting_minutes=self.meeting_minutes,
            reminder_days=tuple(sorted(set(self.reminder_days), reverse=True)),
            change_rating_days_before=self.change_rating_days_before,
            cadence_days={
                ContactPeriod.ASSESSMENT: self.cadence_assessment_days,
                ContactPeriod.ORIENTATION: self.cadence_orientation_days,
                ContactPeriod.SOCIAL_RECOVERY: self.cadence_social_recovery_days,
                ContactPeriod.RE_ORIENTATION: self.cadence_re_orientation_days,
            },
            cadence_grace_working_days=self.cadence_grace_working_days,
            crisis_within_working_days=self.crisis_within_working_days,
            propose_first_meeting=self.propose_first_meeting,
        )

    def meeting_names(self) -> BusNames:
        from services.meetings.infrastructure.bus import meeting_bus_names  # noqa: PLC0415

        return meeting_bus_names(self.meetings_stream_prefix, self.bus_names())
