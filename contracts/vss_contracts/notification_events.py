"""The notifications service's facts: who was told what, when, on which channel.

Published on stream ``VSS_NOTIFICATIONS``, subject
``vss.notifications.<case_id>.<EventName>``, as the same structured CloudEvent as the case
and meeting events (:class:`vss_contracts.CloudEvent`) with ``source`` =
``/vss/notifications`` and ``subject`` = the case id. ``CloudEvent.notification_data()``
gives the typed payload.

The delivery record carries no message content: the template name says what kind of
message it was; ``message_id`` is the Message-ID (e-mail) or ``X-VSS-Message-Id``
(webhook) the recipient saw and ``delivery_key`` a webhook's ``X-VSS-Delivery``, so a
message found in a mailbox or a receiver's log can be matched to its record.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from vss_contracts.registry import UnknownEventType, Upcaster, upcast
from vss_contracts.types import ContractModel, OrganisationId, ShortText, UserId

__all__ = [
    "NOTIFICATION_EVENTS",
    "NOTIFICATION_EVENT_SOURCE",
    "NOTIFICATION_EVENT_TYPES",
    "NOTIFICATION_STREAM",
    "NOTIFICATION_SUBJECTS",
    "NOTIFICATION_SUBJECT_PREFIX",
    "TYPE_PREFIX",
    "DeliveryChannel",
    "NotificationAcknowledged",
    "NotificationEscalated",
    "NotificationEventData",
    "NotificationFailed",
    "NotificationSent",
    "Recipient",
    "decode_notification_event",
]

NOTIFICATION_STREAM = "VSS_NOTIFICATIONS"
NOTIFICATION_SUBJECT_PREFIX = "vss.notifications"
NOTIFICATION_SUBJECTS = f"{NOTIFICATION_SUBJECT_PREFIX}.>"
NOTIFICATION_EVENT_SOURCE = "/vss/notifications"
TYPE_PREFIX = "se.vss.notifications."


class DeliveryChannel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SMS = "sms"


class Recipient(ContractModel):
    """Who a message was for (no address: the record says who, not where)."""

    recipient_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=160,
            description="member:<id>, coordinator:<user id>, contact:<key> or duty:<organisation id>",
        ),
    ]
    name: ShortText
    role: Annotated[
        str, Field(description="client | coordinator | relative | professional | plan_contact | duty")
    ]
    organisation_id: OrganisationId | None = None
    user_id: UserId | None = None


class NotificationEventData(ContractModel):
    """Base of every notification event payload."""

    TYPE: ClassVar[str]

    @classmethod
    def event_name(cls) -> str:
        return cls.TYPE.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]


class _Delivery(NotificationEventData):
    delivery_key: Annotated[str, Field(description="Unique per (event, recipient, channel)")]
    message_id: ShortText
    cause_event_id: Annotated[str, Field(description="The case or meeting event the message is about")]
    cause_event_type: ShortText
    template: Annotated[
        str, Field(description="e.g. meeting_invitation, early_warning (what kind of message)")
    ]
    recipient: Recipient
    channel: DeliveryChannel
    urgent: bool = False
    warning_id: UUID | None = None
    attempts: Annotated[int, Field(ge=1)]


class NotificationSent(_Delivery):
    """The channel accepted the message (the SMTP server, the webhook receiver, the SMS gateway)."""

    TYPE: ClassVar[str] = "se.vss.notifications.NotificationSent.v1"
    sent_at: AwareDatetime


class NotificationFailed(_Delivery):
    """The message could not be delivered and will not be retried (or was withdrawn)."""

    TYPE: ClassVar[str] = "se.vss.notifications.NotificationFailed.v1"
    failed_at: AwareDatetime
    reason: ShortText
    permanent: bool = True


class NotificationAcknowledged(NotificationEventData):
    """A person confirmed an urgent message through its signed link."""

    TYPE: ClassVar[str] = "se.vss.notifications.NotificationAcknowledged.v1"
    delivery_key: str
    warning_id: UUID
    recipient: Recipient
    acknowledged_at: AwareDatetime


class NotificationEscalated(NotificationEventData):
    """Nobody acknowledged an early warning in time: the duty contacts were alerted."""

    TYPE: ClassVar[str] = "se.vss.notifications.NotificationEscalated.v1"
    warning_id: UUID
    triggered_at: AwareDatetime
    escalated_at: AwareDatetime
    organisation_ids: list[OrganisationId]
    unacknowledged: Annotated[int, Field(ge=0, description="Urgent messages sent and not acknowledged")]


NOTIFICATION_EVENTS: tuple[type[NotificationEventData], ...] = (
    NotificationSent,
    NotificationFailed,
    NotificationAcknowledged,
    NotificationEscalated,
)
NOTIFICATION_EVENT_TYPES: dict[str, type[NotificationEventData]] = {
    cls.TYPE: cls for cls in NOTIFICATION_EVENTS
}
NOTIFICATION_UPCASTERS: dict[str, tuple[str, Upcaster]] = {}


def decode_notification_event(type_name: str, payload: dict[str, Any]) -> NotificationEventData:
    """Validate a payload of any known version into the current notification event model."""
    current, payload = upcast(type_name, payload, NOTIFICATION_UPCASTERS)
    try:
        model = NOTIFICATION_EVENT_TYPES[current]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return model.model_validate(payload)
