"""The delivery channels against real servers the tests start: SMTP (aiosmtpd), an HTTP
receiver that checks signatures as an organisation would, the file-writing SMS channel and
the local mail sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import icalendar
import orjson
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifications.application.channels import (
    Attachment,
    Channel,
    ChannelSender,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from services.notifications.infrastructure.channels import SmsFileChannel, SmtpChannel, WebhookChannel
from services.notifications.infrastructure.mailsink import MailSink
from services.shared.bus.embedded import free_port
from tests.notifications.support import SECRET, Collector, Received, Receiver, smtp_server
from tests.support.clock import FixedClock
from vss_contracts.webhooks import WebhookSignatureInvalid, sign, verify

T = TypeVar("T")

SENDER = ("VSS Vård- och stödsamordning", "noreply@vss.example")


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coroutine, timeout=10)

    return asyncio.run(main())


def email_message(key: str = "d-1", **changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "delivery_key": key,
        "message_id": f"<{key}@vss.se>",
        "channel": Channel.EMAIL,
        "address": "anna.k@example.org",
        "subject": "Möte i resursgruppen 12 mars",
        "body": "Hej Anna!\n\nResursgruppen träffas 12 mars kl. 10.00.\n",
    }
    values.update(changes)
    return OutgoingMessage(**values)


def invitation() -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//VSS//tests//SV")
    calendar.add("version", "2.0")
    calendar.add("method", "REQUEST")
    event = icalendar.Event()
    event.add("uid", "meeting-1@vss.se")
    event.add("sequence", 1)
    event.add("dtstamp", datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    event.add("dtstart", datetime(2026, 3, 12, 9, 0, tzinfo=UTC))
    event.add("dtend", datetime(2026, 3, 12, 10, 0, tzinfo=UTC))
    event.add("summary", "Resursgruppsmöte")
    calendar.add_component(event)
    return bytes(calendar.to_ical())


# ----------------------------------------------------------------------------- SMTP servers
@asynccontextmanager
async def raw_server(on_connect: Callable[[asyncio.StreamWriter], None]) -> AsyncIterator[int]:
    """A TCP server that does ``on_connect`` to each client and nothing else."""
    writers: list[asyncio.StreamWriter] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        on_connect(writer)

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def smtp_channel(port: int, **options: Any) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", port, sender=SENDER, local_hostname="vss.test", **options)


# --------------------------------------------------------------------------------- e-mail
def test_smtp_delivers_headers_body_and_calendar_invitation() -> None:
    ics = invitation()
    message = email_message(
        urgent=True,
        headers={"X-VSS-Case": "case-42", "Message-ID": "<not-this@example>"},
        attachments=(
            Attachment("invite.ics", 'text/calendar; method=REQUEST; charset="utf-8"', ics),
            Attachment("notes.txt", "text/plain; charset=utf-8", "Dagordning: uppföljning".encode()),
        ),
    )
    handler = Collector()

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port, clock=FixedClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC)))
            await channel.send(message)
            await channel.close()

    run(main())

    [received] = handler.messages
    assert received.mail_from == "noreply@vss.example"
    assert received.rcpt_tos == ["anna.k@example.org"]
    parsed = received.parsed()
    assert parsed["From"].addresses[0].display_name == SENDER[0]
    assert parsed["From"].addresses[0].addr_spec == SENDER[1]
    assert str(parsed["To"]) == "anna.k@example.org"
    assert str(parsed["Subject"]) == "Möte i resursgruppen 12 mars"
    assert str(parsed["Message-ID"]) == "<d-1@vss.se>"  # the message's own, whatever the extras say
    assert len(parsed.get_all("Message-ID") or []) == 1
    assert parsed["Date"].datetime == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert str(parsed["Auto-Submitted"]) == "auto-generated"
    assert (str(parsed["Importance"]), str(parsed["X-Priority"])) == ("high", "1")
    assert str(parsed["X-VSS-Case"]) == "case-42"

    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content_charset() == "utf-8"
    assert body.get_content().replace("\r\n", "\n") == message.body  # as received: CRLF
    # the invitation shown by calendar clients: text/calendar alternative to the text body
    alternative = next(p for p in parsed.walk() if p.get_content_type() == "multipart/alternative")
    inline = [p for p in alternative.iter_parts() if p.get_content_type() == "text/calendar"]
    assert len(inline) == 1
    assert inline[0].get_param("method") == "REQUEST"
    # the .ics file itself
    files = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert set(files) == {"invite.ics", "notes.txt"}
    ics_part = files["invite.ics"]
    assert ics_part.get_content_type() == "text/calendar"
    assert ics_part.get_param("method") == "REQUEST"
    for part in (ics_part, inline[0]):
        payload = part.get_payload(decode=True)
        assert payload == ics  # byte for byte, CRLF line endings included
        calendar = icalendar.Calendar.from_ical(payload)
        assert str(calendar["METHOD"]) == "REQUEST"
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == "meeting-1@vss.se"
        assert event.decoded("DTSTART") == datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    assert files["notes.txt"].get_content() == "Dagordning: uppföljning"


def test_smtp_reuses_its_connection_and_survives_a_server_restart() -> None:
    handler = Collector()

    async def main() -> None:
        channel = smtp_channel(0)
        async with smtp_server(handler) as port:
            channel.port = port
            await channel.send(email_message("a"))
            await channel.send(email_message("b"))
        # The kept connection is dead now; the next send notices (NOOP) and reconnects.
        async with smtp_server(handler, port=port):
            await channel.send(email_message("c"))
        await channel.close()

    run(main())

    assert [m.parsed()["Message-ID"] for m in handler.messages] == ["<a@vss.se>", "<b@vss.se>", "<c@vss.se>"]
    sessions = [m.session for m in handler.messages]
    assert sessions[0] == sessions[1] != sessions[2]


class SlowCollector(Collector):
    """Takes a moment over each message, so that sends on several connections overlap."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


def test_smtp_sends_on_up_to_its_connections_at_once_and_one_at_a_trickle() -> None:
    handler = SlowCollector()

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port, connections=3)
            assert channel.concurrency == 3
            await asyncio.gather(*(channel.send(email_message(f"burst-{n}")) for n in range(9)))
            for n in range(3):  # one after the other: the connection used last each time
                await channel.send(email_message(f"trickle-{n}"))
            await channel.close()

    run(main())

    burst = [m.session for m in handler.messages if "burst" in str(m.parsed()["Message-ID"])]
    trickle = [m.session for m in handler.messages if "trickle" in str(m.parsed()["Message-ID"])]
    assert len(burst) == 9
    assert len(set(burst)) == 3  # three connections, each reused
    assert len(set(trickle)) == 1
    assert trickle[0] in set(burst)


def test_smtp_connections_out_of_range_are_refused() -> None:
    for connections in (0, 17):
        with pytest.raises(ValueError, match="connections must be 1 to 16"):
            smtp_channel(1025, connections=connections)


class DropsKeptConnections(Collector):
    """Hangs up on a session's second message (a relay closing idle connections), as the
    sender finds out only when it sends on it."""

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if any(m.session == id(session) for m in self.messages):
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 closing the connection"
        envelope.mail_from = address
        return "250 OK"


def test_a_kept_connection_found_gone_sends_on_a_new_one_at_once() -> None:
    """A connection used a moment ago is sent on without a NOOP first; gone, the message
    goes at once on a new one."""
    handler = DropsKeptConnections()

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port)
            await channel.send(email_message("a"))
            await channel.send(email_message("b"))  # no failure: a new connection took it
            await channel.close()

    run(main())

    assert [m.parsed()["Message-ID"] for m in handler.messages] == ["<a@vss.se>", "<b@vss.se>"]
    assert handler.messages[0].session != handler.messages[1].session


def test_an_email_built_ahead_arrives_as_one_built_when_it_is_sent() -> None:
    """``prepare`` builds the e-mail and its bytes while the connection carries another; sent,
    it is what the server receives of the same message built at its send (its Date aside)."""
    handler = Collector()
    ics = invitation()
    attachments = (Attachment("invite.ics", 'text/calendar; method=REQUEST; charset="utf-8"', ics),)

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port)
            await channel.send(email_message("first"))  # the server's extensions are known now
            for key in ("ahead", "at-send"):
                message = email_message(key, urgent=True, attachments=attachments)
                if key == "ahead":
                    channel.prepare(message)
                    channel.prepare(email_message("never-sent"))  # cancelled meanwhile: dropped
                await channel.send(message)
            await channel.close()

    run(main())

    _, ahead, at_send = handler.messages

    def without_date_and_id(received: Received) -> bytes:
        lines = received.content.split(b"\r\n")
        kept = [line for line in lines if not line.startswith((b"Date:", b"Message-ID:", b"X-VSS"))]
        text = b"\r\n".join(kept).replace(b"ahead", b"KEY").replace(b"at-send", b"KEY")
        return re.sub(rb"={15}\d+==", b"BOUNDARY", text)  # MIME boundaries are random

    assert (ahead.mail_from, ahead.rcpt_tos) == (at_send.mail_from, at_send.rcpt_tos)
    assert ahead.parsed()["Message-ID"] == "<ahead@vss.se>"
    assert without_date_and_id(ahead) == without_date_and_id(at_send)
    assert ahead.session == at_send.session


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_smtp_451_is_temporary_until_the_server_accepts(stage: str) -> None:
    handler = Collector()
    deferred = ["451 4.7.1 Greylisted, try again later"] * 2
    if stage == "RCPT":
        handler.rcpt_replies = deferred
    else:
        handler.data_replies = deferred
    failures: list[TemporaryFailure] = []

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port)
            for _ in range(3):
                try:
                    await channel.send(email_message())
                except TemporaryFailure as failure:
                    failures.append(failure)
            await channel.close()

    run(main())

    assert len(failures) == 2
    assert all("451" in str(f) for f in failures)
    assert len(handler.messages) == 1
    assert handler.messages[0].parsed()["Message-ID"] == "<d-1@vss.se>"


@pytest.mark.parametrize(
    ("rcpt", "data"),
    [(["550 5.1.1 <anna.k@example.org>: no such user"], []), ([], ["554 5.7.1 Message rejected"])],
    ids=["recipient-550", "data-554"],
)
def test_smtp_5xx_is_permanent(rcpt: list[str], data: list[str]) -> None:
    handler = Collector(rcpt_replies=rcpt, data_replies=data)

    async def main() -> None:
        async with smtp_server(handler) as port:
            channel = smtp_channel(port)
            with pytest.raises(PermanentFailure, match=r"55[04]"):
                await channel.send(email_message())
            # the channel is still usable afterwards
            await channel.send(email_message("next"))
            await channel.close()

    run(main())
    assert [str(m.parsed()["Message-ID"]) for m in handler.messages] == ["<next@vss.se>"]


def test_smtp_nothing_listening_is_temporary() -> None:
    channel = smtp_channel(free_port(), timeout=2)
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        run(channel.send(email_message()))


def test_smtp_silent_server_times_out_temporarily() -> None:
    async def main() -> None:
        async with raw_server(lambda writer: None) as port:
            with pytest.raises(TemporaryFailure):
                await smtp_channel(port, timeout=0.3).send(email_message())

    run(main())


def test_smtp_server_hanging_up_is_temporary() -> None:
    def greet_and_hang_up(writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 localhost ESMTP\r\n")
        writer.close()

    async def main() -> None:
        async with raw_server(greet_and_hang_up) as port:
            with pytest.raises(TemporaryFailure):
                await smtp_channel(port).send(email_message())

    run(main())


@pytest.mark.parametrize(
    "changes",
    [{"address": "not an address"}, {"subject": "Injected\r\nBcc: someone@example.org"}],
    ids=["bad-address", "header-injection"],
)
def test_smtp_unsendable_message_is_permanent(changes: dict[str, Any]) -> None:
    handler = Collector()

    async def main() -> None:
        async with smtp_server(handler) as port:
            with pytest.raises(PermanentFailure):
                await smtp_channel(port).send(email_message(**changes))

    run(main())
    assert handler.messages == []


# -------------------------------------------------------------------------------- webhooks
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def webhook_message(url: str, key: str = "w-1", **changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "delivery_key": key,
        "message_id": f"<{key}@vss.se>",
        "channel": Channel.WEBHOOK,
        "address": url,
        "subject": "SipDecided",
        "body": "",
        "payload": {"type": "se.vss.case.SipDecided", "case_id": "c-1", "text": "Beslutad SIP – åtgärder"},
        "secret": SECRET,
    }
    values.update(changes)
    return OutgoingMessage(**values)


def send_webhook(message: OutgoingMessage, **options: Any) -> None:
    async def main() -> None:
        channel = WebhookChannel(**options)
        try:
            await channel.send(message)
        finally:
            await channel.close()

    run(main())


def test_webhook_is_signed_and_verified_by_the_receiver(receiver: Receiver) -> None:
    message = webhook_message(receiver.url + "/hooks/vss")
    send_webhook(message)

    [request] = receiver.requests
    assert request.verified == "ok"
    assert request.path == "/hooks/vss"
    assert orjson.loads(request.body) == message.payload
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-vss-delivery"] == "w-1"
    assert headers["x-vss-message-id"] == "<w-1@vss.se>"
    assert abs(int(headers["x-vss-timestamp"]) - time.time()) < 60
    assert headers["x-vss-signature"] == sign(SECRET, int(headers["x-vss-timestamp"]), request.body)


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (503, TemporaryFailure),
        (500, TemporaryFailure),
        (429, TemporaryFailure),
        (408, TemporaryFailure),
        (400, PermanentFailure),
        (404, PermanentFailure),
        (410, PermanentFailure),
    ],
)
def test_webhook_answers_map_to_failures(receiver: Receiver, status: int, failure: type[Exception]) -> None:
    receiver.status = status
    with pytest.raises(failure, match=str(status)):
        send_webhook(webhook_message(receiver.url))
    assert receiver.requests[0].verified == "ok"


def test_webhook_signed_with_the_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    with pytest.raises(PermanentFailure, match="401"):
        send_webhook(webhook_message(receiver.url, secret="an-old-secret"))
    assert receiver.requests[0].verified.startswith("signature mismatch")


def test_webhook_from_a_clock_far_behind_is_refused_as_stale(receiver: Receiver) -> None:
    behind = FixedClock(datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(PermanentFailure, match="401"):
        send_webhook(webhook_message(receiver.url), clock=behind)
    assert receiver.requests[0].verified.startswith("stale")


def test_webhook_without_secret_or_payload_is_never_sent(receiver: Receiver) -> None:
    with pytest.raises(PermanentFailure, match="secret"):
        send_webhook(webhook_message(receiver.url, secret=None))
    with pytest.raises(PermanentFailure, match="payload"):
        send_webhook(webhook_message(receiver.url, payload=None))
    with pytest.raises(PermanentFailure, match="URL"):
        send_webhook(webhook_message("ftp://example.org/hook"))
    assert receiver.requests == []


def test_webhook_connection_refused_and_timeout_are_temporary(receiver: Receiver) -> None:
    with pytest.raises(TemporaryFailure, match="connection"):
        send_webhook(webhook_message(f"http://127.0.0.1:{free_port()}/"))
    with pytest.raises(TemporaryFailure, match="timed out"):
        send_webhook(webhook_message(receiver.url + "/slow"), timeout=0.3)


# ---------------------------------------------------------------------- signature contract
def test_verify_accepts_a_fresh_signature_and_rotated_lists() -> None:
    body = b'{"a":1}'
    now = 1_760_000_000
    signature = sign(SECRET, now, body)
    assert re.fullmatch(r"v1=[0-9a-f]{64}", signature)
    assert sign(SECRET.encode(), now, body) == signature
    verify(SECRET, timestamp_header=str(now), signature_header=signature, body=body, now=now + 299)
    rotated = f"{sign('old', now, body)}, {signature}, v2=somethingelse"
    verify(SECRET, timestamp_header=str(now), signature_header=rotated, body=body, now=now)
    verify("old", timestamp_header=str(now), signature_header=rotated, body=body, now=now)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "secret", "reason"),
    [
        ("1760000000", "GOOD", b'{"a":2}', SECRET, "signature mismatch"),  # tampered body
        ("1760000000", "GOOD", b'{"a":1}', "wrong", "signature mismatch"),  # wrong secret
        ("1760000001", "GOOD", b'{"a":1}', SECRET, "signature mismatch"),  # tampered timestamp
        ("1759999000", "OLD", b'{"a":1}', SECRET, "stale"),  # signed 1000 s before now
        ("1760001000", "FUTURE", b'{"a":1}', SECRET, "stale"),  # from the future
        (None, "GOOD", b'{"a":1}', SECRET, "missing X-VSS-Timestamp"),
        ("1760000000", None, b'{"a":1}', SECRET, "missing X-VSS-Signature"),
        ("soon", "GOOD", b'{"a":1}', SECRET, "malformed X-VSS-Timestamp"),
        ("1760000000", "deadbeef", b'{"a":1}', SECRET, "malformed X-VSS-Signature"),
        ("1760000000", "v1=xyz", b'{"a":1}', SECRET, "malformed X-VSS-Signature"),
        ("1760000000", "v2=abc", b'{"a":1}', SECRET, "no v1 signature"),
    ],
)
def test_verify_rejects(
    timestamp: str | None, signature: str | None, body: bytes, secret: str, reason: str
) -> None:
    now = 1_760_000_000
    signatures = {
        "GOOD": sign(SECRET, now, b'{"a":1}'),
        "OLD": sign(SECRET, now - 1000, b'{"a":1}'),
        "FUTURE": sign(SECRET, now + 1000, b'{"a":1}'),
    }
    header = signatures.get(signature, signature) if signature is not None else None
    with pytest.raises(WebhookSignatureInvalid, match=reason) as raised:
        verify(secret, timestamp_header=timestamp, signature_header=header, body=body, now=now)
    assert isinstance(raised.value, ValueError)


# ------------------------------------------------------------------------------------- SMS
def sms_message(key: str = "s-1", **changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "delivery_key": key,
        "message_id": f"<{key}@vss.se>",
        "channel": Channel.SMS,
        "address": "+46701234567",
        "subject": "Tidig signal",
        "body": "Tolvan har   hört av sig.\n\n\nRing henne i dag.",
        "urgent": True,
    }
    values.update(changes)
    return OutgoingMessage(**values)


def test_sms_file_channel_writes_one_file_per_delivery(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    channel = SmsFileChannel(tmp_path / "sms", clock=clock)
    run(channel.send(sms_message()))
    run(channel.send(sms_message()))  # a resend replaces its file
    run(channel.send(sms_message("s-2", body="ord " * 500, urgent=False)))

    assert sorted(p.name for p in (tmp_path / "sms").iterdir()) == ["s-1.json", "s-2.json"]
    first = orjson.loads((tmp_path / "sms" / "s-1.json").read_bytes())
    assert first == {
        "to": "+46701234567",
        "body": "Tidig signal\nTolvan har hört av sig.\nRing henne i dag.",
        "urgent": True,
        "message_id": "<s-1@vss.se>",
        "written_at": "2026-03-01T08:00:00+00:00",
    }
    long = orjson.loads((tmp_path / "sms" / "s-2.json").read_bytes())
    assert len(long["body"]) <= 480
    assert long["body"].endswith("ord…")
    assert long["urgent"] is False


def test_sms_to_something_not_a_phone_number_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentFailure):
        run(SmsFileChannel(tmp_path).send(sms_message(address="anna.k@example.org")))
    assert list(tmp_path.iterdir()) == []


def test_sms_unsafe_delivery_key_stays_in_the_directory(tmp_path: Path) -> None:
    run(SmsFileChannel(tmp_path / "sms").send(sms_message("../../etc/passwd")))
    [written] = list((tmp_path / "sms").iterdir())
    assert written.name.endswith(".json")
    assert "/" not in written.name
    assert not written.name.startswith(".")


def test_the_channels_implement_the_protocol(tmp_path: Path) -> None:
    webhook = WebhookChannel()
    senders: list[ChannelSender] = [smtp_channel(25), webhook, SmsFileChannel(tmp_path)]
    assert [s.channel for s in senders] == [Channel.EMAIL, Channel.WEBHOOK, Channel.SMS]
    # How many sends each runs at once: the sender claims no more than that (one connection).
    assert [s.concurrency for s in senders] == [1, 4, 1]
    run(webhook.close())


# ------------------------------------------------------------------------------- mail sink
def test_mail_sink_keeps_each_message_as_a_file(tmp_path: Path) -> None:
    directory = tmp_path / "mail"

    async def main() -> None:
        async with MailSink(directory) as sink:
            assert sink.port > 0
            for n in (1, 2):
                message = EmailMessage()
                message["From"] = "noreply@vss.example"
                message["To"] = "omar.s@example.org"
                message["Subject"] = f"Påminnelse {n}"
                message["Message-ID"] = f"<m-{n}@vss.se>"
                message.set_content(f"Meddelande nummer {n}.")
                await aiosmtplib.send(
                    message,
                    hostname="127.0.0.1",
                    port=sink.port,
                    recipients=["omar.s@example.org", "bcc@example.org"],
                    local_hostname="vss.test",
                )
            # and an invitation through the channel
            await smtp_channel(sink.port).send(
                email_message(
                    "invite",
                    attachments=(Attachment("invite.ics", "text/calendar; method=REQUEST", invitation()),),
                )
            )
        assert not sink.running

    run(main())

    files = sorted(directory.glob("*.eml"))
    assert len(files) == 3
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{12}-\d+\.eml", f.name) for f in files)
    assert not [p for p in directory.iterdir() if p.suffix != ".eml"]  # no temporary files left
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    by_id = {str(m["Message-ID"]): m for m in parsed}
    assert set(by_id) == {"<m-1@vss.se>", "<m-2@vss.se>", "<invite@vss.se>"}
    first = by_id["<m-1@vss.se>"]
    assert str(first["Subject"]) == "Påminnelse 1"
    assert str(first["X-VSS-Envelope-To"]) == "omar.s@example.org, bcc@example.org"
    assert str(first["X-VSS-Envelope-From"]) == "<noreply@vss.example>"
    assert isinstance(first, EmailMessage)
    body = first.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Meddelande nummer 1."
    invite = by_id["<invite@vss.se>"]
    assert isinstance(invite, EmailMessage)
    [ics] = list(invite.iter_attachments())
    payload = ics.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert str(icalendar.Calendar.from_ical(payload)["METHOD"]) == "REQUEST"


def test_mail_sink_answers_451_when_it_cannot_store(tmp_path: Path) -> None:
    directory = tmp_path / "mail"

    async def main() -> None:
        async with MailSink(directory) as sink:
            directory.rmdir()  # nowhere to write: the client is told to retry
            with pytest.raises(TemporaryFailure, match="451"):
                await smtp_channel(sink.port).send(email_message())
            directory.mkdir()
            await smtp_channel(sink.port).send(email_message())

    run(main())
    assert len(list(directory.glob("*.eml"))) == 1


@pytest.mark.parametrize("log_sessions", [False, True], ids=["default", "asked_for"])
def test_mail_sink_session_chatter_is_off_unless_asked_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, log_sessions: bool
) -> None:
    caplog.set_level(logging.INFO)  # the services' level

    async def main() -> None:
        async with MailSink(tmp_path / "mail", log_sessions=log_sessions) as sink:
            for _ in range(3):
                await smtp_channel(sink.port).send(email_message())

    run(main())
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 3
    assert stat.S_IMODE((tmp_path / "mail").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "mail").iterdir())
    chatter = [r for r in caplog.records if r.name == "mail.log"]
    if log_sessions:
        assert any("handling connection" in r.getMessage() for r in chatter)
    else:
        assert chatter == []
