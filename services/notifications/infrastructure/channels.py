"""The delivery channels: e-mail over SMTP, signed webhooks, SMS (written to files).

Each implements :class:`~services.notifications.application.channels.ChannelSender`:
``send`` delivers one rendered message or raises ``TemporaryFailure`` (retried with
backoff) or ``PermanentFailure`` (recorded, never retried).

- :class:`SmtpChannel` (aiosmtplib) keeps a pool of SMTP connections, one message at a time
  on each, and reuses each for the next message while it is fresh (checked with ``NOOP``
  after a pause); any failure closes it, so the next attempt starts on a new connection.
- :class:`WebhookChannel` (httpx) POSTs the payload as JSON, signed as
  :mod:`vss_contracts.webhooks` describes; it never sends an unsigned request.
- :class:`SmsFileChannel` writes each SMS as a JSON file for a gateway to pick up; an SMS
  provider's API would implement the same protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
import tempfile
import time
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, ContentTypeHeader
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import orjson

from services.notifications.application.channels import (
    Attachment,
    Channel,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from services.notifications.application.ports import Clock
from services.notifications.infrastructure.mime import OWN_HEADERS, email_bytes
from services.shared.clock import SystemClock
from vss_contracts.webhooks import (
    DELIVERY_HEADER,
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)

__all__ = ["SmsFileChannel", "SmtpChannel", "WebhookChannel"]


# ------------------------------------------------------------------------------------ e-mail


@lru_cache(maxsize=64)  # a few content types, each message's attachments again
def _content_type(value: str) -> tuple[str, str, dict[str, str]]:
    """'text/calendar; method=REQUEST; charset="utf-8"' -> ('text', 'calendar', {...})."""
    header = policy.default.header_factory("content-type", value)
    assert isinstance(header, ContentTypeHeader)
    if header.defects:  # type: ignore[attr-defined]  # BaseHeader has them; the stub omits them
        raise ValueError(f"invalid content type {value!r}")
    return header.maintype, header.subtype, {k.lower(): str(v) for k, v in header.params.items()}


def _sender_line(sender: tuple[str, str]) -> bytes | None:
    """The ``From:`` line (no CRLF) as the email package folds it; None if it cannot."""
    try:
        name, value = policy.SMTP.header_store_parse(
            "From", Address(display_name=sender[0], addr_spec=sender[1])
        )
        return policy.SMTP.fold_binary(name, value).removesuffix(b"\r\n")
    except Exception:
        return None


def email_of(
    message: OutgoingMessage, sender: tuple[str, str], sender_line: bytes | None, date: datetime
) -> bytes | EmailMessage:
    """The message's bytes written directly (:func:`email_bytes`), or else ``build_email``'s
    message (raises ``ValueError`` on what cannot be sent)."""
    if sender_line is not None and sender[1].isascii():
        try:
            types = [_content_type(a.content_type) for a in message.attachments]
        except ValueError:
            types = None
        if types is not None and (flat := email_bytes(message, sender_line, date, types)) is not None:
            return flat
    return build_email(message, sender, date)


def build_email(message: OutgoingMessage, sender: tuple[str, str], date: datetime) -> EmailMessage:
    """The RFC 5322 message for ``message`` (raises ``ValueError`` on what cannot be sent).

    A ``text/calendar`` attachment is sent twice, as calendar clients expect an invitation:
    inline as the ``text/calendar`` alternative to the text body (Outlook and Gmail show
    it as an invitation with its ``method=``) and as the ``.ics`` file itself.
    """
    email = EmailMessage(policy=policy.SMTP)
    name, address = sender
    email["From"] = Address(display_name=name, addr_spec=address)
    email["To"] = Address(addr_spec=message.address)
    email["Subject"] = message.subject
    email["Date"] = format_datetime(date.astimezone(UTC))
    email["Message-ID"] = message.message_id
    email["Auto-Submitted"] = "auto-generated"
    if message.urgent:
        email["Importance"] = "high"
        email["X-Priority"] = "1"
    for header, value in message.headers.items():
        if header.lower() in OWN_HEADERS:
            continue
        del email[header]
        email[header] = value
    email.set_content(message.body, subtype="plain", charset="utf-8", cte="quoted-printable")

    invitations: list[tuple[Attachment, str, dict[str, str]]] = []
    files: list[tuple[Attachment, str, str, dict[str, str]]] = []
    for attachment in message.attachments:
        maintype, subtype, params = _content_type(attachment.content_type)
        if (maintype, subtype) == ("text", "calendar"):
            invitations.append((attachment, subtype, params))
        files.append((attachment, maintype, subtype, params))
    for attachment, subtype, params in invitations:
        # bytes (base64): the .ics exactly as rendered, CRLF line endings included
        email.add_alternative(attachment.content, maintype="text", subtype=subtype, params=params)
    for attachment, maintype, subtype, params in files:
        email.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=params,
        )
    return email


class _Connection:
    """One kept SMTP connection of the pool, and when it was last used."""

    __slots__ = ("client", "last_used")

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
        self.last_used = 0.0

    def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


class SmtpChannel:
    """E-mail over SMTP (aiosmtplib), on up to ``connections`` connections at once.

    ``starttls``: ``True`` requires STARTTLS, ``False`` never uses it, ``None`` uses it when
    the server offers it; ``use_tls`` is implicit TLS (port 465).

    Each send takes a connection of its own from the pool (the one used last first, so that
    at a trickle one connection carries everything and the others time out), so up to
    ``connections`` messages are in flight, one per connection, and the sender runs as many
    lanes (ADR 0025). A connection is reused for the next message if it was used within
    ``idle_seconds`` and still answers ``NOOP`` (used within the last second: without the
    NOOP; if it turns out to be gone, the message is sent at once on a new connection);
    otherwise (and after any failure) a new one is opened. Call :meth:`close` on shutdown.

    Failures: no connection, timeouts, a dropped connection and 4xx replies are
    temporary; a 5xx reply to the message (sender, recipient or data refused) and a
    message that cannot be encoded are permanent. Problems of the connection itself
    (greeting refused, STARTTLS unavailable, login refused) are temporary whatever their
    code: they are the server's or the configuration's, not the message's, and retrying
    after they are fixed delivers it.
    """

    channel: Channel = Channel.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: tuple[str, str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool | None = False,
        use_tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        local_hostname: str | None = None,
        idle_seconds: float = 30.0,
        clock: Clock | None = None,
        connections: int = 1,
    ) -> None:
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be 1 to {MAX_CONNECTIONS}, not {connections}")
        self.host = host
        self.port = port
        self.sender = sender
        self.concurrency = connections  # sends at once: one per connection
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        self._tls_context = tls_context
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._idle_seconds = idle_seconds
        self._clock: Clock = clock or SystemClock()
        self._connections = [_Connection() for _ in range(connections)]
        self._free = list(self._connections)  # not sending now; the last one used at the end
        self._slots = asyncio.Semaphore(connections)
        self._sender_line = _sender_line(sender)
        # Messages built ahead (:meth:`prepare`), by delivery key: the bytes or the e-mail.
        self._ahead: dict[str, bytes | EmailMessage] = {}
        self._ahead_at_most = _AHEAD * connections

    def prepare(self, message: OutgoingMessage) -> None:
        """Build the e-mail's bytes ahead of :meth:`send` (on the loop, while the connection
        carries the message before). What fails to build is left to :meth:`send`."""
        try:
            built = email_of(message, self.sender, self._sender_line, self._clock.now())
        except Exception:
            return
        ahead = self._ahead
        ahead[message.delivery_key] = built
        while len(ahead) > self._ahead_at_most:  # built for messages that did not go (cancelled)
            ahead.pop(next(iter(ahead)), None)

    async def send(self, message: OutgoingMessage) -> None:
        built = self._ahead.pop(message.delivery_key, None)
        if built is None:
            try:
                built = email_of(message, self.sender, self._sender_line, self._clock.now())
            except Exception as error:  # building is pure: whatever fails here fails every time
                raise PermanentFailure(f"cannot build the e-mail: {_describe(error)}") from error
        async with self._slots:
            connection = self._free.pop()
            try:
                await self._send_on(connection, message, built)
            finally:
                self._free.append(connection)

    async def _send_on(
        self, connection: _Connection, message: OutgoingMessage, built: bytes | EmailMessage
    ) -> None:
        client, checked = await self._connection(connection)
        try:
            try:
                await self._transmit(client, message, built)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPResponseException) as error:
                gone = not isinstance(error, aiosmtplib.SMTPResponseException) or error.code == 421
                if checked or not gone:
                    raise
                # The kept connection, not checked with NOOP as it was used a moment ago,
                # was gone: sent at once on a new one, as a retry would (same Message-ID).
                connection.drop()
                client, _ = await self._connection(connection)
                await self._transmit(client, message, built)
        except BaseException as error:
            connection.drop()
            _raise_send_failure(error)
            raise
        connection.last_used = time.monotonic()

    async def _transmit(
        self, client: aiosmtplib.SMTP, message: OutgoingMessage, built: bytes | EmailMessage
    ) -> None:
        if isinstance(built, bytes):  # 7-bit: any server takes it as it is
            await client.sendmail(self.sender[1], [message.address], built)
        else:  # e.g. a non-ASCII address: aiosmtplib asks for SMTPUTF8
            await client.send_message(built, sender=self.sender[1], recipients=[message.address])

    async def close(self) -> None:
        """Say QUIT on each kept connection and close it (after the sends under way)."""
        for _ in self._connections:
            await self._slots.acquire()
        try:
            for connection in self._connections:
                client, connection.client = connection.client, None
                if client is not None and client.is_connected:
                    try:
                        await client.quit(timeout=self._timeout)
                    except (aiosmtplib.SMTPException, OSError):
                        client.close()
        finally:
            for _ in self._connections:
                self._slots.release()

    async def _connection(self, connection: _Connection) -> tuple[aiosmtplib.SMTP, bool]:
        """The client to send on, and whether it is known to be alive (new, or it answered
        NOOP): one used within ``_FRESH`` seconds is taken as it is (a NOOP per message was a
        round trip per message, on both ends when the sink is in-process)."""
        client = connection.client
        if client is not None and client.is_connected:
            idle = time.monotonic() - connection.last_used
            if idle <= _FRESH:
                return client, False
            if idle <= self._idle_seconds:
                try:
                    await client.noop(timeout=self._timeout)
                except (aiosmtplib.SMTPException, OSError):
                    connection.drop()
                else:
                    return client, True
            else:
                connection.drop()
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            use_tls=self._use_tls,
            tls_context=self._tls_context,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
        except BaseException as error:
            client.close()
            if isinstance(error, aiosmtplib.SMTPException | OSError | ssl.SSLError | TimeoutError):
                raise TemporaryFailure(
                    f"SMTP {self.host}:{self.port}: cannot connect: {_describe(error)}"
                ) from error
            raise
        connection.client = client
        connection.last_used = time.monotonic()
        return client, True


MAX_CONNECTIONS = 16  # SMTP connections at once, at most (VSS_SMTP_CONNECTIONS)
_AHEAD = 4  # e-mails kept built ahead at most
_FRESH = 1.0  # seconds: a connection used this recently is sent on without a NOOP first


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _raise_send_failure(error: BaseException) -> None:
    """Raise the channel's failure for an error while sending (returns for foreign errors)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        text = "; ".join(
            f"{refused.recipient}: {refused.code} {refused.message}" for refused in error.recipients
        )
        if codes and all(500 <= code < 600 for code in codes):
            raise PermanentFailure(f"recipient refused: {text}") from error
        raise TemporaryFailure(f"recipient not accepted now: {text}") from error
    if isinstance(error, aiosmtplib.SMTPResponseException):
        reply = f"{error.code} {error.message}"
        if 500 <= error.code < 600:
            raise PermanentFailure(f"SMTP server refused the message: {reply}") from error
        raise TemporaryFailure(f"SMTP server deferred the message: {reply}") from error
    if isinstance(error, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | TimeoutError):
        raise TemporaryFailure(f"SMTP connection lost: {_describe(error)}") from error
    if isinstance(error, aiosmtplib.SMTPNotSupported | ValueError):
        # e.g. a non-ASCII address on a server without SMTPUTF8, an unparseable address
        raise PermanentFailure(f"cannot send this message: {_describe(error)}") from error
    if isinstance(error, aiosmtplib.SMTPException | OSError):
        raise TemporaryFailure(f"SMTP error: {_describe(error)}") from error


# ----------------------------------------------------------------------------------- webhook
_TEMPORARY_STATUS = frozenset({408, 425, 429})


class WebhookChannel:
    """POST the message's ``payload`` as signed JSON to ``message.address``.

    2xx is delivered; 408, 425, 429, 5xx, connection errors and timeouts are temporary;
    any other answer (3xx: redirects are not followed; 4xx) is permanent. A message
    without ``secret`` or ``payload``, or with an invalid URL, fails permanently before
    anything is sent. Pass an ``httpx.AsyncClient`` to share one; otherwise the channel
    makes its own, closed by :meth:`close`.
    """

    channel: Channel = Channel.WEBHOOK

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        clock: Clock | None = None,
        concurrency: int = 4,
    ) -> None:
        self.concurrency = concurrency  # requests at once (to any receivers)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()

    def prepare(self, message: OutgoingMessage) -> None:
        pass  # nothing worth doing ahead: the signature's timestamp is taken as it is sent

    async def send(self, message: OutgoingMessage) -> None:
        if not message.secret:
            raise PermanentFailure("webhook has no secret: VSS never sends an unsigned webhook")
        if message.payload is None:
            raise PermanentFailure("webhook message has no payload")
        try:
            url = httpx.URL(message.address)
        except (httpx.InvalidURL, TypeError) as error:
            raise PermanentFailure(f"invalid webhook URL {message.address!r}: {error}") from error
        if url.scheme not in {"http", "https"} or not url.host:
            raise PermanentFailure(f"invalid webhook URL {message.address!r}: expected http(s)://host/…")
        try:
            body = orjson.dumps(message.payload)
        except TypeError as error:
            raise PermanentFailure(f"webhook payload is not JSON: {error}") from error
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: message.delivery_key,
            MESSAGE_ID_HEADER: message.message_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(message.secret, timestamp, body),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers, timeout=self._timeout)
        except httpx.UnsupportedProtocol as error:
            raise PermanentFailure(f"invalid webhook URL {message.address!r}: {error}") from error
        except httpx.TimeoutException as error:
            raise TemporaryFailure(f"webhook timed out: {_describe(error)}") from error
        except (httpx.TransportError, OSError) as error:
            raise TemporaryFailure(f"webhook connection failed: {_describe(error)}") from error
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"webhook answered {status} {response.reason_phrase}: {_excerpt(response.content)}"
        if status in _TEMPORARY_STATUS or 500 <= status < 600:
            raise TemporaryFailure(reason)
        raise PermanentFailure(reason)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _excerpt(content: bytes, limit: int = 200) -> str:
    text = content.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------- SMS
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{4,22}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def sms_text(subject: str, body: str, max_chars: int) -> str:
    """Subject and body as one SMS text: blank runs collapsed, cut at a word with '…'."""
    lines = [" ".join(line.split()) for line in f"{subject}\n{body}".splitlines()]
    text = "\n".join(line for line in lines if line)
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def file_name_for(delivery_key: str) -> str:
    """``<delivery_key>.json``, with characters unsafe in a file name replaced (plus a hash then)."""
    safe = _SAFE_NAME.sub("_", delivery_key).lstrip(".")
    if safe != delivery_key or not safe:
        safe = f"{safe[:100]}-{hashlib.sha256(delivery_key.encode()).hexdigest()[:12]}"
    return f"{safe}.json"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync'd, then ``os.replace``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where directories can be fsync'd)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SmsFileChannel:
    """SMS written as files: ``<directory>/<delivery_key>.json`` (atomically; a resend
    of the same delivery replaces its file), for a gateway or a person to pick up.

    The file holds ``to``, ``body`` (subject and body, at most ``max_chars``), ``urgent``,
    ``message_id`` and ``written_at`` (ISO 8601, UTC).
    """

    channel: Channel = Channel.SMS
    concurrency: int = 1  # a file at a time

    def __init__(self, directory: Path, *, max_chars: int = 480, clock: Clock | None = None) -> None:
        self.directory = Path(directory)
        self.max_chars = max_chars
        self._clock: Clock = clock or SystemClock()

    def prepare(self, message: OutgoingMessage) -> None:
        pass

    async def send(self, message: OutgoingMessage) -> None:
        if not _PHONE.match(message.address.strip()):
            raise PermanentFailure(f"not a phone number: {message.address!r}")
        document: dict[str, Any] = {
            "to": message.address.strip(),
            "body": sms_text(message.subject, message.body, self.max_chars),
            "urgent": message.urgent,
            "message_id": message.message_id,
            "written_at": self._clock.now().astimezone(UTC).isoformat(),
        }
        path = self.directory / file_name_for(message.delivery_key)
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as error:
            raise TemporaryFailure(f"cannot write {path}: {_describe(error)}") from error

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
