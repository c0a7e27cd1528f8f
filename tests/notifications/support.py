"""What the notifications tests share: the service over real servers the tests start.

- :class:`World`: the notifications service with its real store (SQLite), the real SMTP
  channel to a real mail sink on a free port (each message a file), the real webhook and
  SMS channels and an injected clock; :class:`~tests.meetings.feed.CaseFeed` drives the
  case events, :meth:`World.meeting` the meeting events.
- :class:`Receiver`: an organisation's webhook endpoint that checks each request's
  signature with :mod:`vss_contracts.webhooks`, as a receiver would.
- :class:`Collector` and :func:`smtp_server`: an aiosmtpd server that can defer (4xx) or
  refuse (5xx) on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import http.server
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import icalendar
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifications.application.channels import Channel, ChannelSender
from services.notifications.application.service import (
    CASE_CONSUMER,
    MEETINGS_CONSUMER,
    NotificationsService,
    Organisation,
    Policy,
    Signer,
)
from services.notifications.infrastructure.channels import SmsFileChannel, SmtpChannel, WebhookChannel
from services.notifications.infrastructure.mailsink import MailSink
from services.notifications.infrastructure.store import NotificationStore
from services.notifications.infrastructure.templates import Templates
from tests.meetings.feed import CaseFeed
from tests.support.clock import FixedClock
from vss_contracts import case_events as ce
from vss_contracts import webhooks
from vss_contracts.meeting_events import MeetingEventData
from vss_contracts.webhooks import WebhookSignatureInvalid, verify

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm, when CaseFeed records
DAY = date(2026, 3, 2)
SECRET = "s3cret-shared-with-the-organisation"


# ------------------------------------------------------------------------------ the service
class Adapter:
    """What CaseFeed calls, onto the notifications service's case consumer."""

    def __init__(self, service: NotificationsService) -> None:
        self.service = service

    def apply_case_event(
        self,
        *,
        case_id: UUID,
        event_id: str,
        recorded_at: datetime,
        data: ce.CaseEventData,
        stream_sequence: int,
        log_position: int | None = None,
    ) -> bool:
        return self.service.apply(
            CASE_CONSUMER,
            case_id=case_id,
            event_id=event_id,
            event_type=data.TYPE,
            recorded_at=recorded_at,
            data=data,
            stream_sequence=stream_sequence,
            case_position=log_position,
        )


class World:
    """The service over a real store, a real mail sink and real channels, on one event loop."""

    def __init__(
        self,
        tmp: Path,
        organisations: dict[str, Organisation] | None = None,
        *,
        language: str = "sv",
        templates_dir: Path | None = None,
        max_attempts: int = 8,
        store_url: str | None = None,
        sink: type[MailSink] = MailSink,
        store: type[NotificationStore] = NotificationStore,
        connections: int = 1,
    ) -> None:
        self.clock = FixedClock(START)
        self.sink_dir = tmp / "mail"
        self.sms_dir = tmp / "sms"
        self.sink = sink(self.sink_dir)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.sink.start())
        self.store = store(store_url or f"sqlite:///{tmp / 'notifications.sqlite'}")
        self.store.migrate()
        self.smtp = SmtpChannel(
            "127.0.0.1", self.sink.port, sender=("VSS", "noreply@vss.example.se"), connections=connections
        )
        # The webhook is signed with the system clock: the receiver checks it against its own.
        self.webhook = WebhookChannel(timeout=5)
        channels: dict[Channel, ChannelSender] = {
            Channel.EMAIL: self.smtp,
            Channel.WEBHOOK: self.webhook,
            Channel.SMS: SmsFileChannel(self.sms_dir, clock=self.clock),
        }
        self.policy = Policy(
            first_retry=timedelta(seconds=10),
            max_attempts=max_attempts,
            organisations=organisations or {},
        )
        self.service = NotificationsService(
            self.store,
            Templates(language, templates_dir),
            channels,
            self.clock,
            Signer(b"test-key"),
            self.policy,
        )
        self.feed = CaseFeed(Adapter(self.service))  # type: ignore[arg-type]
        self.meeting_sequence = 0

    def meeting(self, data: MeetingEventData) -> str:
        """Feed one meeting event (the next on the meetings stream); its event id."""
        self.meeting_sequence += 1
        event_id = str(uuid4())
        assert self.service.apply(
            MEETINGS_CONSUMER,
            case_id=self.feed.case_id,
            event_id=event_id,
            event_type=data.TYPE,
            recorded_at=self.clock.now(),
            data=data,
            stream_sequence=self.meeting_sequence,
        )
        return event_id

    def deliver(self) -> int:
        return self.loop.run_until_complete(self.service.deliver_due())

    def mails(self) -> list[EmailMessage]:
        return [parse_mail(p.read_bytes()) for p in sorted(self.sink_dir.glob("*.eml"))]

    def recipients(self) -> list[str]:
        return sorted(address_of(m) for m in self.mails())

    def close(self) -> None:
        self.loop.run_until_complete(self.smtp.close())
        self.loop.run_until_complete(self.webhook.close())
        self.loop.run_until_complete(self.sink.stop())
        self.loop.close()
        self.store.close()


def parse_mail(content: bytes) -> EmailMessage:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def address_of(mail: EmailMessage) -> str:
    """The one address a message was sent to."""
    return str(mail["To"]).split("<")[-1].rstrip(">")


def text_of(mail: EmailMessage) -> str:
    """The plain text body, with the line endings it was written with (SMTP's are CRLF)."""
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def calendar_of(mail: EmailMessage) -> icalendar.Calendar:
    """The attached ``invite.ics``, parsed (checking the inline copy is the same)."""
    [attachment] = [a for a in mail.iter_attachments() if a.get_filename() == "invite.ics"]
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes)
    inline = [p for p in mail.walk() if p.get_content_type() == "text/calendar" and not p.get_filename()]
    assert [p.get_payload(decode=True) for p in inline] == [payload]
    assert attachment.get_param("method") == icalendar.Calendar.from_ical(payload)["METHOD"]
    return icalendar.Calendar.from_ical(payload)


# ------------------------------------------------------------------------------ SMTP servers
@dataclass
class Received:
    mail_from: str | None
    rcpt_tos: list[str]
    content: bytes
    session: int

    def parsed(self) -> EmailMessage:
        return parse_mail(self.content)


@dataclass
class Collector:
    """An aiosmtpd handler: keeps every message; can defer (451) or refuse (5xx) on cue."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)  # replies to the next RCPTs, then 250
    data_replies: list[str] = field(default_factory=list)  # replies to the next DATAs, then 250
    attempts: int = 0

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        assert envelope.original_content is not None
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, id(session))
        )
        return "250 OK"


@asynccontextmanager
async def smtp_server(handler: Collector, port: int = 0) -> AsyncIterator[int]:
    """An aiosmtpd server on the running loop; yields its port."""
    loop = asyncio.get_running_loop()
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocols.append(SMTP(handler, hostname="localhost", loop=loop))
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", port)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------------- webhooks
@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: str  # "ok" or the reason verify gave


class Receiver:
    """An organisation's webhook endpoint (stdlib HTTP server in a thread) that checks each
    request with ``vss_contracts.webhooks.verify``: 401 if it fails, else ``status``."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.status = 204
        self.requests: list[Request] = []
        self.release = threading.Event()  # a request to /slow waits for this
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    verify(
                        receiver.secret,
                        timestamp_header=self.headers.get(webhooks.TIMESTAMP_HEADER),
                        signature_header=self.headers.get(webhooks.SIGNATURE_HEADER),
                        body=body,
                    )
                    verified = "ok"
                except WebhookSignatureInvalid as error:
                    verified = str(error)
                receiver.requests.append(Request(self.path, dict(self.headers.items()), body, verified))
                if self.path == "/slow":
                    receiver.release.wait(5)
                status = receiver.status if verified == "ok" else 401
                answer = b'{"error": "nope"}' if status >= 300 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up waiting (the timeout tests)
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
