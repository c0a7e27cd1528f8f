"""A channel's due deliveries, shared by its lanes, one recipient at a time (ADR 0025).

A channel sends on several lanes at once (SMTP: one connection each). The lanes take the
due rows from one :class:`RecipientQueue` in the order they were read (urgent first), and a
row's recipient stays with the lane that took it until that lane has stored the outcome
(:meth:`RecipientQueue.release`). No other lane takes a row of that recipient meanwhile, so
two messages to one recipient are never in flight at once and never overtake each other: the
second is taken, by any lane, only once the first one's outcome is stored. A lane that finds
every queued row's recipient held by another lane waits (:meth:`RecipientQueue.changed`)
instead of ending, so a burst keeps every lane busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Iterator

from services.notifications.application.channels import Channel
from services.notifications.application.ports import DeliveryRow


def recipient_of(row: DeliveryRow) -> Hashable:
    """Who a delivery goes to, for its order: the mailbox or phone number it is sent to; for a
    webhook, the person at the receiver (one receiver serves a whole organisation, whose
    people's messages need no order between them)."""
    if row.channel == Channel.WEBHOOK.value:
        return (row.channel, row.address, row.person.get("key"))
    return (row.channel, row.address.strip().lower())


class RecipientQueue:
    """Due rows of one channel, taken by its lanes so that no two lanes hold one recipient."""

    def __init__(
        self, rows: Iterable[DeliveryRow], recipient: Callable[[DeliveryRow], Hashable] = recipient_of
    ) -> None:
        self._rows = list(rows)
        self._recipient = recipient
        # recipient -> (the lane holding it, how many of their rows it holds unsettled: a lane
        # takes its next row before it stores the outcome of the one before)
        self._held: dict[Hashable, tuple[int, int]] = {}
        self._promised: dict[Hashable, int] = {}  # recipient -> the lane that made it ahead
        self._promise_of: dict[int, Hashable] = {}
        self._waiting: list[asyncio.Future[None]] = []

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[DeliveryRow]:
        return iter(self._rows)

    def _free_for(self, lane: int, *, promised: bool = True) -> int | None:
        """The first row ``lane`` may take: its recipient held by no other lane and, with
        ``promised``, not promised to another lane's next send either."""
        for index, row in enumerate(self._rows):
            key = self._recipient(row)
            holder = self._held.get(key)
            if holder is not None and holder[0] != lane:
                continue
            if promised and self._promised.get(key, lane) != lane:
                continue
            return index
        return None

    def peek(self, lane: int) -> DeliveryRow | None:
        """The row ``lane`` is likely to take next, promised to it so that the other lanes leave
        it (its message is made ahead while the lane's send waits: made once, not by every
        lane); None if there is none."""
        self._forget_promise(lane)
        index = self._free_for(lane)
        if index is None:
            return None
        row = self._rows[index]
        key = self._recipient(row)
        self._promised[key] = lane
        self._promise_of[lane] = key
        return row

    def take(self, lane: int) -> DeliveryRow | None:
        """The first row whose recipient no other lane holds (or is promised, if there is
        another), now held by ``lane``; None if there is none: the queue is empty, or every
        recipient in it is another lane's."""
        index = self._free_for(lane)
        if index is None:
            index = self._free_for(lane, promised=False)
        self._forget_promise(lane)
        if index is None:
            return None
        row = self._rows.pop(index)
        key = self._recipient(row)
        self._held[key] = (lane, self._held.get(key, (lane, 0))[1] + 1)
        return row

    def _forget_promise(self, lane: int) -> None:
        key = self._promise_of.pop(lane, None)
        if key is not None and self._promised.get(key) == lane:
            del self._promised[key]

    def release(self, lane: int, row: DeliveryRow) -> None:
        """``row``'s outcome is stored (or it was never sent): its recipient is free again,
        unless ``lane`` has taken another row of theirs since."""
        key = self._recipient(row)
        holder = self._held.get(key)
        if holder is not None and holder[0] == lane:
            if holder[1] > 1:
                self._held[key] = (lane, holder[1] - 1)
            else:
                del self._held[key]
        self._wake()

    def leave(self, lane: int) -> None:
        """``lane`` has ended: whatever it held is free."""
        for key in [k for k, (holder, _) in self._held.items() if holder == lane]:
            del self._held[key]
        self._forget_promise(lane)
        self._wake()

    def held_by(self, lane: int) -> set[Hashable]:
        return {k for k, (holder, _) in self._held.items() if holder == lane}

    async def changed(self) -> None:
        """Return once a lane has released a recipient or ended."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await future

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)
