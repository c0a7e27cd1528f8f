"""What the sender hands a channel, and how a channel says it failed.

A channel (e-mail over SMTP, webhook, SMS) delivers one :class:`OutgoingMessage` or
raises :class:`TemporaryFailure` (retried with backoff) or :class:`PermanentFailure`
(recorded and shown, never retried). The sender decides nothing about content: the
message is rendered before it reaches the channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str  # e.g. 'text/calendar; method=REQUEST; charset="utf-8"'
    content: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to one address on one channel.

    ``delivery_key`` is unique per (event, recipient, channel); ``message_id`` is derived
    from it (``<key@vss.se>``), so a message sent twice after a crash carries the same
    Message-ID (e-mail) or ``X-VSS-Delivery`` header (webhook) and is recognisable.
    """

    delivery_key: str
    message_id: str
    channel: Channel
    address: str  # an e-mail address, a webhook URL or a phone number
    subject: str
    body: str  # plain text, already rendered
    urgent: bool = False
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (X-VSS-Case …)
    payload: dict[str, Any] | None = None  # a webhook's JSON document
    secret: str | None = None  # a webhook's HMAC key


class DeliveryError(Exception):
    """A channel could not deliver the message."""


class TemporaryFailure(DeliveryError):
    """Try again later (connection refused, 4xx SMTP reply, HTTP 5xx/408/429, timeout)."""


class PermanentFailure(DeliveryError):
    """Trying again will not help (5xx SMTP reply, invalid address, HTTP 4xx)."""


class ChannelSender(Protocol):
    channel: Channel
    # How many sends it runs at once (SMTP: one per connection). The sender claims a delivery
    # only once one of these is free: a claimed delivery queued behind the channel could
    # no longer be cancelled by a withdrawal recorded while it waits.
    concurrency: int

    def prepare(self, message: OutgoingMessage) -> None:
        """Do ahead what :meth:`send` will need and no connection does (may do nothing; never
        raises). Called on the event loop while the channel's send of the message before
        waits for its server, so that this one leaves sooner once claimed: keep it to a
        fraction of a millisecond of CPU, no I/O; nothing is sent."""
        ...

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver or raise :class:`TemporaryFailure` / :class:`PermanentFailure`."""
        ...
