"""Settings of the notifications service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl
from pydantic_settings import SettingsConfigDict

from services.notifications.application.service import Organisation, Policy, Webhook
from services.notifications.domain.audience import Person, Role
from services.shared.auth import secret_file
from services.shared.bus.names import BusNames
from services.shared.settings import AccessLogSettings, BusSettings, CommonSettings
from vss_contracts.meeting_events import MEETING_STREAM, MEETING_SUBJECT_PREFIX


class OrganisationsFileInvalid(ValueError):
    """The organisations file (webhooks, duty contacts) is not valid."""


class _Duty(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")


class _Hook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    secret: str = Field(min_length=16, description="The HMAC-SHA256 key shared with the receiver")


class _Organisation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: _Hook | None = None
    duty: _Duty | None = None


def load_organisations(path: Path | None) -> dict[str, Organisation]:
    """``{organisation id: {"webhook": {"url", "secret"}, "duty": {"name", "email", "phone"}}}``."""
    if path is None:
        return {}
    try:
        raw: Any = orjson.loads(path.read_bytes())
        parsed = {str(k): _Organisation.model_validate(v) for k, v in dict(raw).items()}
    except (OSError, orjson.JSONDecodeError, ValueError, TypeError) as error:
        raise OrganisationsFileInvalid(f"VSS_NOTIFY_ORGANISATIONS {path}: {error}") from error
    return {
        org_id: Organisation(
            webhook=Webhook(str(o.webhook.url), o.webhook.secret) if o.webhook else None,
            duty=Person(
                key=f"duty:{org_id}",
                name=o.duty.name,
                role=Role.DUTY,
                organisation_id=org_id,
                email=str(o.duty.email) if o.duty.email else None,
                phone=o.duty.phone,
            )
            if o.duty
            else None,
        )
        for org_id, o in parsed.items()
    }


class NotificationsSettings(CommonSettings, BusSettings, AccessLogSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    notifications_store_url: str | None = Field(
        default=None, description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory"
    )
    notifications_host: str = "127.0.0.1"
    notifications_port: int = 8003
    notifications_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    meetings_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    smtp_host: str = Field(default="", description="SMTP server; unset: the embedded mail sink")
    smtp_port: int = Field(
        default=8025, description="SMTP port (the embedded sink's when smtp_host is unset)"
    )
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from_name: str = "VSS vård- och stödsamordning"
    mail_from_address: EmailStr = "noreply@vss.example.se"
    notify_language: str = Field(default="sv", pattern="^(sv|en)$")
    notify_templates_dir: Path | None = Field(
        default=None, description="Edited templates (<lang>/<name>.txt)"
    )
    notify_organisations: Path | None = Field(default=None, description="JSON: webhooks and duty contacts")
    escalate_after_minutes: float = Field(default=30, gt=0)
    retry_first_seconds: float = Field(default=30, gt=0)
    retry_max_seconds: float = Field(default=3600, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    sender_interval: float = Field(default=1.0, gt=0, description="Seconds between looks for due messages")
    public_query_url: str = "http://127.0.0.1:8001"
    public_notifications_url: str = "http://127.0.0.1:8003"
    ack_link_key: str | None = Field(default=None, description="HMAC key of acknowledgement links")

    def store_url(self) -> str:
        if self.notifications_store_url:
            return self.notifications_store_url
        return f"sqlite:///{(self.data_dir / 'notifications.sqlite').resolve()}"

    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def sms_dir(self) -> Path:
        return self.data_dir / "sms"

    def link_key(self) -> bytes:
        """The acknowledgement links' key: the setting, else a key file made on first use."""
        if self.ack_link_key:
            return self.ack_link_key.encode()
        return secret_file(self.data_dir / "keys" / "ack-links.key").encode()

    def policy(self) -> Policy:
        return Policy(
            escalate_after=timedelta(minutes=self.escalate_after_minutes),
            first_retry=timedelta(seconds=self.retry_first_seconds),
            max_retry=timedelta(seconds=self.retry_max_seconds),
            max_attempts=self.max_attempts,
            organiser=(self.mail_from_name, str(self.mail_from_address)),
            case_link=self.public_query_url.rstrip("/") + "/v1/cases/{case_id}",
            ack_link=self.public_notifications_url.rstrip("/")
            + "/v1/acknowledgements/{delivery_key}?signature={signature}",
            organisations=load_organisations(self.notify_organisations),
        )

    def meeting_names(self) -> BusNames:
        """The meetings stream this service reads (the meetings service declares it)."""
        return self.bus_names().sibling(MEETING_STREAM, MEETING_SUBJECT_PREFIX, self.meetings_stream_prefix)

    def notification_names(self) -> BusNames:
        from services.notifications.infrastructure.bus import notification_bus_names  # noqa: PLC0415

        return notification_bus_names(self.notifications_stream_prefix, self.bus_names())
