"""The local mail sink: an SMTP server that keeps each accepted message as an ``.eml`` file.

The embedded default for e-mail (``vss up``, and the tests): the notifications service
sends to it over SMTP exactly as to a real relay, and nothing leaves the machine. `vss up`
runs it as a part of its own, in its own process (``services.notifications.mailsink_main``,
ADR 0033); the notifications service started alone without ``VSS_SMTP_HOST`` runs it in its
process. It runs on the caller's asyncio loop (``loop.create_server`` with aiosmtpd's
``SMTP`` protocol; no thread of its own)::

    async with MailSink(Path(".vss/mail"), port=2525) as sink:
        ...  # smtp://127.0.0.1:{sink.port}

Each message is written as ``<UTC time>-<hash of Message-ID>-<n>.eml``: the bytes as
received, preceded by ``X-VSS-Envelope-From`` and ``X-VSS-Envelope-To`` headers (the
SMTP envelope, which the message's own headers need not match). The file is written
to a temporary name, fsync'd and linked into place (never overwriting) before the sink
answers 250; if it cannot be stored the sink answers 451 and the client retries.

It may share its process with the notifications service, so it reads no more of a message
than it must: the SMTP paths and the Message-ID (for the file's name) with regular
expressions, falling back to aiosmtpd's and the email package's parsers for anything
unusual; the message itself is stored as received, never parsed.

aiosmtpd logs every session (``mail.log``: peer, handling connection, EOF, connection
lost) at INFO: 72,889 of 74,016 lines of the notifications log in a 10-minute run. The
sink keeps that logger at WARNING unless ``log_sessions`` (``VSS_MAIL_SINK_LOG_SESSIONS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import re
import tempfile
import weakref
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifications.infrastructure.channels import fsync_directory

__all__ = ["MailSink"]

log = structlog.get_logger("vss.notifications.mailsink")

DATA_SIZE_LIMIT = 32 * 1024 * 1024


# The first Message-ID header of the header section, continuation lines included.
_MESSAGE_ID = re.compile(rb"^message-id:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_HEADERS_END = re.compile(rb"\r?\n\r?\n")


def _message_id(content: bytes) -> str:
    """The message's Message-ID as the email package reads it (``compat32``), found with a
    regular expression: parsing every header was a tenth of the sink's time."""
    end = _HEADERS_END.search(content)
    found = _MESSAGE_ID.search(content, 0, end.start() if end else len(content))
    if found is None:
        return ""
    if not found.group(1).isascii():  # read as the parser reads it (replacement characters)
        return str(BytesHeaderParser(policy=compat32).parsebytes(content).get("Message-ID", "")).strip()
    return found.group(1).decode("ascii").strip()


def _envelope_headers(mail_from: str | None, rcpt_tos: list[str]) -> bytes:
    def clean(text: str) -> str:
        return text.replace("\r", " ").replace("\n", " ")

    return (
        f"X-VSS-Envelope-From: <{clean(mail_from or '')}>\r\n"
        f"X-VSS-Envelope-To: {', '.join(clean(r) for r in rcpt_tos)}\r\n"
    ).encode()


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# '<local@domain> params' with dot-atoms only: what a client sends (aiosmtplib, the channel)
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*([^(]*)",
    re.DOTALL,
)


class _SMTP(SMTP):
    """aiosmtpd's server, reading a plain ``<local@domain>`` path with a regular expression:
    its own parser (the email package's header parser) was a tenth of the sink's time. Any
    other path is read by aiosmtpd as before."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None:
            return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, plain.group(2)


class _Handler:
    """aiosmtpd's handler: DATA -> a file on disk -> 250 (or 451)."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content
        if content is None:
            raw = envelope.content
            content = raw.encode("utf-8", errors="surrogateescape") if isinstance(raw, str) else raw or b""
        task = asyncio.ensure_future(
            asyncio.to_thread(self._sink.store, envelope.mail_from, list(envelope.rcpt_tos), content)
        )
        self._sink._writes.add(task)
        try:
            # shielded: a connection dropped mid-write must not leave half a file behind
            path = await asyncio.shield(task)
        except OSError as error:
            log.warning("mail sink cannot store a message", error=str(error))
            return "451 4.3.0 Requested action aborted: cannot store the message"
        finally:
            if task.done():
                self._sink._writes.discard(task)
            else:
                task.add_done_callback(self._sink._writes.discard)
        return f"250 2.0.0 OK: kept as {path.name}"


class MailSink:
    """An SMTP server on ``host:port`` (``port=0``: any free port, see :attr:`port`)
    writing each accepted message into ``directory``."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostname: str = "localhost",
        data_size_limit: int = DATA_SIZE_LIMIT,
        log_sessions: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.log_sessions = log_sessions
        self.host = host
        self._port = port
        self._hostname = hostname
        self._data_size_limit = data_size_limit
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._writes: set[asyncio.Future[Path]] = set()
        self._counter = itertools.count(1)

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when started with ``port=0``)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # the messages are 0600
        # aiosmtpd's logger is the process's: per-session INFO lines only when asked for.
        logging.getLogger("mail.log").setLevel(logging.NOTSET if self.log_sessions else logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def protocol() -> SMTP:
            smtp = _SMTP(
                handler,
                hostname=self._hostname,
                data_size_limit=self._data_size_limit,
                enable_SMTPUTF8=True,
                loop=loop,
            )
            self._connections.add(smtp)
            return smtp

        self._server = await loop.create_server(protocol, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("mail sink listening", host=self.host, port=self._port, directory=str(self.directory))

    async def stop(self) -> None:
        """Stop accepting, let messages being written finish, close open sessions."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        for smtp in list(self._connections):
            transport: Any = getattr(smtp, "transport", None)
            if transport is not None:
                transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)

    async def __aenter__(self) -> MailSink:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def files(self) -> list[Path]:
        """The kept messages, oldest first."""
        return sorted(self.directory.glob("*.eml"))

    def store(self, mail_from: str | None, rcpt_tos: list[str], content: bytes) -> Path:
        """Write one message durably; the file's path (blocking: call it in a thread)."""
        data = _envelope_headers(mail_from, rcpt_tos) + content
        message_id = _message_id(content) or hashlib.sha256(content).hexdigest()
        short = hashlib.sha256(message_id.encode("utf-8", errors="surrogateescape")).hexdigest()[:12]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            while True:
                path = self.directory / f"{stamp}-{short}-{next(self._counter)}.eml"
                try:
                    os.link(temporary, path)  # atomic, and never replaces a kept message
                except FileExistsError:
                    continue
                except OSError:  # a file system without hard links
                    if path.exists():
                        continue
                    os.replace(temporary, path)
                break
        finally:
            Path(temporary).unlink(missing_ok=True)
        fsync_directory(self.directory)
        return path
