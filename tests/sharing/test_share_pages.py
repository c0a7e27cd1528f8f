"""How the sharing relay's pages go out: a short page as single messages, a long one as one
atomic batch (the server's cost per batch is fixed, a single message costs a fraction of it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from services.shared.bus.relay import group_commits, pack_commits
from services.sharing.infrastructure.bus import SHARE_BATCH_FROM, ShareLog, share_bus_names
from services.sharing.infrastructure.store import LoggedShare, SharingStore


def _rows(count: int) -> list[LoggedShare]:
    return [
        LoggedShare(
            position=position,
            organisation=f"org-{position % 3}",
            case_id="case-1",
            message_id=f"org-{position % 3}:event-{position}",
            name="SipDecided",
            type="se.vss.case.SipDecided.v1",
            body=b"{}",
        )
        for position in range(1, count + 1)
    ]


def _published(count: int) -> list[list[int]]:
    """The page of ``count`` rows as the relay publishes it: each list one publish."""
    store = cast(SharingStore, SimpleNamespace(url=SimpleNamespace(is_postgres=False)))
    log = ShareLog(store, share_bus_names())
    messages = log.render(_rows(count))
    return [[m.position for m in commit] for commit in pack_commits(group_commits(messages, complete=True))]


def test_a_short_page_goes_out_as_single_messages() -> None:
    assert _published(3) == [[1], [2], [3]]
    assert _published(SHARE_BATCH_FROM - 1) == [[p] for p in range(1, SHARE_BATCH_FROM)]


def test_a_long_page_goes_out_as_one_batch() -> None:
    assert _published(SHARE_BATCH_FROM) == [list(range(1, SHARE_BATCH_FROM + 1))]
    assert _published(500) == [list(range(1, 501))]
