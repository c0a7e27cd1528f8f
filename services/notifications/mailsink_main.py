"""Process entry point of the local mail sink: ``python -m services.notifications.mailsink_main``.

`vss up` runs the sink as a part of its own (ADR 0033): :class:`MailSink` on
``127.0.0.1:VSS_SMTP_PORT`` writing into the mail directory (``<VSS_DATA_DIR>/mail``), and
points the notifications service at it as at a real relay. SIGINT/SIGTERM stop it after the
messages being written are on disk. A port already taken ends it at start with one line.
"""

from __future__ import annotations

import asyncio
import errno

import structlog

from services.notifications.infrastructure.mailsink import MailSink
from services.notifications.settings import NotificationsSettings
from services.shared.serve import Service, run_service

log = structlog.get_logger("vss.notifications.mailsink")

HOST = "127.0.0.1"  # the sink stands in for a relay on this machine: never reachable from outside


class MailSinkPortTaken(OSError):
    """Another process listens on the sink's port (a start error, one line)."""


def port_taken(port: int) -> MailSinkPortTaken:
    return MailSinkPortTaken(f"port {port} for the local mail sink is taken (VSS_SMTP_PORT sets another)")


def build() -> Service:
    settings = NotificationsSettings()
    sink = MailSink(
        settings.mail_dir(), HOST, settings.smtp_port, log_sessions=settings.mail_sink_log_sessions
    )

    async def run(stop: asyncio.Event) -> None:
        try:
            await sink.start()
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise port_taken(settings.smtp_port) from None
            raise
        try:
            await stop.wait()
        finally:
            await sink.stop()  # the messages being written are kept (and answered) first
            log.info("mail sink stopped", directory=str(sink.directory))

    return Service(settings, lambda: None, run=run)


def main() -> int:
    return run_service("mail sink", build, errors=(MailSinkPortTaken,))


if __name__ == "__main__":
    raise SystemExit(main())
