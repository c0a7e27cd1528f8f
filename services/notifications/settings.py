"""Settings of the notifications service (VSS_* environment variables), read once at start-up."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field, HttpUrl
from pydantic_settings import SettingsConfigDict

from services.notifications.application.service import (
    AnswerLinks,
    Organisation,
    PlanLinks,
    Policy,
    RetiredKey,
    Webhook,
)
from services.notifications.domain.audience import Person, Role
from services.shared.auth import secret_file
from services.shared.bus.names import BusNames
from services.shared.files import write_private
from services.shared.settings import (
    AccessLogSettings,
    BusSettings,
    CommonSettings,
    PlanLinkSettings,
    sqlite_under,
)
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
    # The shared organisations file's other sections (services/shared/organisations.py checks them).
    name: str | None = None
    nats: dict[str, Any] | None = None
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


class LinkKeyInvalid(ValueError):
    """The previous acknowledgement key cannot be used as configured (a start error, one line)."""


class LinkKeyNotRotatable(ValueError):
    """The acknowledgement links' key is a setting (VSS_ACK_LINK_KEY): rotate it there."""


class NotificationsSettings(CommonSettings, BusSettings, AccessLogSettings, PlanLinkSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    notifications_store_url: str | None = Field(
        default=None, description="sqlite:///FILE or postgresql://…; unset: SQLite under the data directory"
    )
    notifications_host: str = "127.0.0.1"
    notifications_port: int = 8003
    notifications_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    meetings_stream_prefix: str = Field(default="", description="Only for tests on a shared server")
    smtp_host: str = Field(
        default="", description="SMTP server; unset: the embedded mail sink, in this process"
    )
    smtp_port: int = Field(
        default=8025, description="SMTP port (the embedded sink's when smtp_host is unset)"
    )
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_connections: int = Field(
        default=4,
        ge=1,
        le=16,
        description="SMTP connections at once, one message in flight on each (ADR 0025)",
    )
    mail_from_name: str = "VSS vård- och stödsamordning"
    mail_from_address: EmailStr = "noreply@vss.example.se"
    notify_language: str = Field(default="sv", pattern="^(sv|en)$")
    notify_templates_dir: Path | None = Field(
        default=None, description="Edited templates (<lang>/<name>.txt)"
    )
    notify_organisations: Path | None = Field(
        default=None,
        # The one organisations file of every part (VSS_ORGANISATIONS); the older name still works.
        validation_alias=AliasChoices(
            "VSS_NOTIFY_ORGANISATIONS", "VSS_ORGANISATIONS", "notify_organisations"
        ),
        description="JSON: webhooks and duty contacts (sections of the organisations file)",
    )
    escalate_after_minutes: float = Field(default=30, gt=0)
    retry_first_seconds: float = Field(default=30, gt=0)
    retry_max_seconds: float = Field(default=3600, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    sender_interval: float = Field(default=1.0, gt=0, description="Seconds between looks for due messages")
    public_query_url: str = "http://127.0.0.1:8001"
    public_meetings_url: str = Field(
        default="http://127.0.0.1:8002", description="The meetings API as invitees reach it (answer links)"
    )
    answer_link_key: str | None = Field(
        default=None,
        description="The meetings service's answer link key (VSS_ANSWER_LINK_KEY); unset: no answer links",
        repr=False,
    )
    public_notifications_url: str = "http://127.0.0.1:8003"
    ack_link_key: str | None = Field(default=None, description="HMAC key of acknowledgement links")
    ack_link_previous_key: str | None = Field(
        default=None, description="The key before VSS_ACK_LINK_KEY: its links work for the overlap"
    )
    ack_link_key_rotated_at: datetime | None = Field(
        default=None, description="When VSS_ACK_LINK_PREVIOUS_KEY was retired (ISO 8601 with offset)"
    )
    ack_link_key_overlap_hours: float = Field(
        default=72,
        ge=0,
        le=24 * 365,
        description="How long links signed with the previous key keep working after a rotation",
    )
    mail_sink_log_sessions: bool = Field(
        default=False, description="Log the local mail sink's SMTP sessions (aiosmtpd, one line per step)"
    )

    def store_url(self) -> str:
        return self.notifications_store_url or sqlite_under(self.data_dir, "notifications.sqlite")

    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def sms_dir(self) -> Path:
        return self.data_dir / "sms"

    def link_key(self) -> bytes:
        """The acknowledgement links' key: the setting, else a key file made on first use."""
        if self.ack_link_key:
            return self.ack_link_key.encode()
        return secret_file(self.link_key_file()).encode()

    def link_key_file(self) -> Path:
        return self.data_dir / "keys" / "ack-links.key"

    def previous_link_key(self) -> RetiredKey | None:
        """The key before the last rotation: the settings, else the file ``rotate_link_key`` wrote."""
        if self.ack_link_key:
            if not self.ack_link_previous_key:
                return None
            if self.ack_link_key_rotated_at is None or self.ack_link_key_rotated_at.tzinfo is None:
                raise LinkKeyInvalid(
                    "VSS_ACK_LINK_PREVIOUS_KEY needs VSS_ACK_LINK_KEY_ROTATED_AT with an offset"
                )
            return RetiredKey(self.ack_link_previous_key.encode(), self.ack_link_key_rotated_at)
        path = self.link_key_file().with_suffix(".previous.json")
        if not path.exists():
            return None
        try:
            kept = orjson.loads(path.read_bytes())
            retired_at = datetime.fromisoformat(kept["retired_at"])
            if retired_at.tzinfo is None:
                raise ValueError("retired_at has no offset")
            return RetiredKey(str(kept["key"]).encode(), retired_at)
        except (OSError, ValueError, TypeError, KeyError) as error:  # orjson's error is a ValueError
            reason = f"{path}: not a previous acknowledgement key ({_one_line(error)})"
            raise LinkKeyInvalid(reason) from error

    def link_key_overlap(self) -> timedelta:
        return timedelta(hours=self.ack_link_key_overlap_hours)

    def rotate_link_key(self, now: datetime) -> None:
        """A new key file; the current key is kept as the previous one, retired ``now``.

        Links signed with it keep working for the overlap; a key two rotations back is gone.
        The running service reads the keys at start-up: restart it.
        """
        if self.ack_link_key:
            raise LinkKeyNotRotatable(
                "VSS_ACK_LINK_KEY is set: set the new key there, the old one in"
                " VSS_ACK_LINK_PREVIOUS_KEY and the time in VSS_ACK_LINK_KEY_ROTATED_AT"
            )
        current = secret_file(self.link_key_file())
        retired = {"key": current, "retired_at": now.isoformat()}
        write_private(self.link_key_file().with_suffix(".previous.json"), orjson.dumps(retired))
        write_private(self.link_key_file(), secrets.token_urlsafe(48).encode())

    def answer_links(self) -> AnswerLinks | None:
        """The invitees' answer links (ADR 0020), when the meetings service's answer link key is
        set here too (``VSS_ANSWER_LINK_KEY``); else invitations carry no answer link."""
        if not self.answer_link_key:
            return None
        return AnswerLinks(self.public_meetings_url, self.answer_link_key.encode())

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
            plan_links=PlanLinks(self.plan_link_base_url, self.plan_link_signing_key()),
            answer_links=self.answer_links(),
        )

    def meeting_names(self) -> BusNames:
        """The meetings stream this service reads (the meetings service declares it)."""
        return self.bus_names().sibling(MEETING_STREAM, MEETING_SUBJECT_PREFIX, self.meetings_stream_prefix)

    def notification_names(self) -> BusNames:
        from services.notifications.infrastructure.bus import notification_bus_names  # noqa: PLC0415

        return notification_bus_names(self.notifications_stream_prefix, self.bus_names())


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:160]
