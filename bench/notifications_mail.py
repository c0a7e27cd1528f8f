"""CPU per e-mail of the notifications process's e-mail path: ``SmtpChannel`` into the
embedded ``MailSink``, both on one event loop, as ``vss up`` runs them in one process.

Each message is an urgent early-warning-like e-mail in Swedish (every third with an ``.ics``
invitation), prepared ahead (``SmtpChannel.prepare``, as the sender's lane does) and sent
over the kept connection; the sink stores each as an fsync'd file. After ``--warmup``
messages, the process's CPU time (user + system, all threads: the sink writes in worker
threads) and wall time are taken over ``--messages`` messages, one after the other.
Nothing else runs: no store, no bus, no templates.

Usage::

    PYTHONPATH=$PWD:$PWD/contracts .venv/bin/python bench/notifications_mail.py --messages 400
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from services.notifications.application.channels import Attachment, Channel, OutgoingMessage
from services.notifications.infrastructure.channels import SmtpChannel
from services.notifications.infrastructure.mailsink import MailSink

SENDER = ("VSS Vård- och stödsamordning", "noreply@vss.example")
ICS = (
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:m-1@vss.se\r\n"
    b"SUMMARY:Resursgruppsm\xc3\xb6te\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def message(n: int) -> OutgoingMessage:
    key = f"5f0c7c1e-2b1a-4c7e-9a55-0d1f7e0b1c2d:member:{n}:email"
    invitation = Attachment("invite.ics", 'text/calendar; method=REQUEST; charset="utf-8"', ICS)
    return OutgoingMessage(
        delivery_key=key,
        message_id=f"<{key}@vss.se>",
        channel=Channel.EMAIL,
        address="anna.k@example.org",
        subject="Tidig varning: ärende 5f0c7c1e",
        body="Hej Anna!\n\nEn tidig varning har utlösts för ärende 5f0c7c1e.\n"
        "Bekräfta att du sett den: https://vss.example/ack/x\n",
        urgent=True,
        attachments=(invitation,) if n % 3 == 0 else (),
        headers={"X-VSS-Case": "5f0c7c1e", "X-VSS-Delivery": key},
    )


async def run(messages: int, warmup: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        async with MailSink(Path(directory)) as sink:
            channel = SmtpChannel("127.0.0.1", sink.port, sender=SENDER)
            for n in range(warmup):
                await channel.send(message(n))
            cpu, wall = time.process_time(), time.perf_counter()
            for n in range(messages):
                outgoing = message(n)
                channel.prepare(outgoing)
                await channel.send(outgoing)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await channel.close()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    cpu, wall = asyncio.run(run(args.messages, args.warmup))
    print(
        f"{args.messages} e-mails: CPU {cpu / args.messages * 1000:.2f} ms per e-mail"
        f" (channel + sink), wall {wall / args.messages * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
