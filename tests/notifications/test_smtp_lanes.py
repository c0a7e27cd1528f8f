"""The sender on several SMTP connections, against the project's mail sink (ADR 0025).

The service over a real SQLite store sends a case's backlog (plan updates and two early
warnings to eight contacts and the coordinator) on four SMTP connections to the mail sink,
slowed a little so that sends overlap. Every message arrives once, several are on their way
at once, never two to one recipient, and each recipient's arrive in the order the sender read
them (urgent first).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from services.notifications.application.ports import iso
from services.notifications.infrastructure.mailsink import MailSink
from tests.notifications.support import DAY, World, parse_mail

CONNECTIONS = 4
CONTACTS = 8


class TimedSink(MailSink):
    """The mail sink, a little slow to keep each message (as a relay under load), noting when
    it began and ended keeping each one and for whom."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.kept: list[tuple[float, float, str, str]] = []  # (began, ended, to, Message-ID)
        self._lock = threading.Lock()

    def store(self, mail_from: str | None, rcpt_tos: list[str], content: bytes) -> Path:
        began = time.monotonic()
        time.sleep(0.01)
        path = super().store(mail_from, rcpt_tos, content)
        with self._lock:
            self.kept.append((began, time.monotonic(), rcpt_tos[0], str(parse_mail(content)["Message-ID"])))
        return path


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(began, 1) for began, _ in spans] + [(ended, -1) for _, ended in spans])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


def test_four_connections_deliver_each_message_once_and_each_recipients_in_order(tmp_path: Path) -> None:
    world = World(tmp_path, sink=TimedSink, connections=CONNECTIONS)
    sink = world.sink
    assert isinstance(sink, TimedSink)
    try:
        world.feed.planned_with_contacts(DAY, CONTACTS)
        world.feed.trigger(DAY)
        world.feed.trigger(DAY)
        read = [r for r in world.store.due(iso(world.clock.now()), 1000) if r.channel == "email"]
        assert Counter(r.address for r in read)["k0@example.se"] == 3  # the plan, two warnings
        world.deliver()
    finally:
        world.close()

    kept = sink.kept
    assert sorted(message_id for *_, message_id in kept) == sorted(r.message_id for r in read)
    assert 1 < most_at_once([(began, ended) for began, ended, *_ in kept]) <= CONNECTIONS
    for address in {r.address for r in read}:
        theirs = sorted((began, ended, message_id) for began, ended, to, message_id in kept if to == address)
        assert most_at_once([(began, ended) for began, ended, _ in theirs]) == 1, address
        assert [m for *_, m in theirs] == [r.message_id for r in read if r.address == address]
    assert {r.status for r in world.store.deliveries_of_case(str(world.feed.case_id))} == {"sent"}
