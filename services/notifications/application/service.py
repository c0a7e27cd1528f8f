"""The notifications use cases: decide on a consumed event, deliver, escalate, acknowledge.

- **Decide** (:meth:`NotificationsService.apply`): the domain says who is told what; here
  each notice becomes one delivery per channel the person has (e-mail; SMS for urgent
  messages; their organisation's webhook), keyed by (event, person, channel). The
  deliveries, the case's audience and the consumer's position are stored in one
  transaction: the outbox. A redelivered event changes nothing.
- **Deliver** (:meth:`deliver_due`): pending deliveries whose time has come are claimed
  one by one (pending -> sending, a conditional update: a cancellation recorded first
  wins and the message never leaves), rendered and handed to their channel; the outcome
  and its record event (NotificationSent / NotificationFailed) are stored in one
  transaction, with the claim of the lane's next message (one commit per message),
  before that message is handed over. A channel sends on several lanes (SMTP: one per
  connection), never two messages to one recipient at once (ADR 0025). A cancellation
  that comes after the claim changes nothing and records nothing: the message is on its
  way and is recorded as what it became. Temporary
  failures are retried with exponential backoff up to ``max_attempts``. Every claim, retry
  and recovery asks the audience's one rule (:meth:`Audience.why_not_told`, the one the
  cancellation at event time asks too): a message decided before its recipient left the
  resource group or the case closed is cancelled instead of sent, one decided after (a
  meeting's cancellation) only by the consent in force that day. A consent's end
  (``valid_until``) is a date passing, not an event: nothing is swept when it passes, but
  every delivery is checked against the consent in force on the day it is claimed.
- **Escalate** (:meth:`escalate_due`): an early warning nobody acknowledged within
  ``escalate_after`` goes to the duty contacts of the coordinators' organisations.
- **Acknowledge** (:meth:`acknowledge`): a person confirmed an urgent message.

The one case this cannot make exactly once: a crash after a channel accepted a message
and before its outcome was stored. The claim is released when the sender starts again
(:meth:`recover_claims`) and the delivery is sent again, with the same Message-ID /
``X-VSS-Delivery``, so the copy is recognisable; or, if by then it may no longer go (the
same rule), it is cancelled (the record says it may have left before the stop).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid5

import structlog

from services.notifications.application.channels import (
    Attachment,
    Channel,
    ChannelSender,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from services.notifications.application.lanes import RecipientQueue
from services.notifications.application.ports import (
    AdoptedAlert,
    AdoptedOutcome,
    AlreadyApplied,
    AttemptOutcome,
    Clock,
    Counters,
    Decisions,
    DeliveryRow,
    NewDelivery,
    RecordEvent,
    Renderer,
    Store,
    iso,
)
from services.notifications.domain.audience import NOT_COVERED, Audience, Person, local_day
from services.notifications.domain.decisions import (
    ANSWER_MEETING,
    CASE_HANDLERS,
    PLAN_LINK_HOLDER,
    PLAN_LINK_KIND,
    Notice,
    escalation,
    on_case_event,
    on_meeting_event,
)
from services.shared.ics import meeting_ics
from services.shared.plan_links import LinkKind, plan_link
from services.shared.signed_links import answer_link
from vss_contracts import notification_events as ne
from vss_contracts.case_events import CaseEventData
from vss_contracts.meeting_events import MeetingEventData

log = structlog.get_logger("vss.notifications")

NAMESPACE = uuid5(NAMESPACE_URL, "urn:vss:notifications")
# Why a rebuilt store settles a delivery as not sent: it was decided for an event the adopted
# delivery record's history had passed, by a rule the version that recorded it did not have.
DECIDED_BY_A_LATER_VERSION = "decided by a later version for history the adopted record had passed"
CASE_CONSUMER = "notifications-case"
MEETINGS_CONSUMER = "notifications-meetings"


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Organisation:
    """What the deployment knows of an organisation: its webhook and its duty contact."""

    webhook: Webhook | None = None
    duty: Person | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    escalate_after: timedelta = timedelta(minutes=30)
    first_retry: timedelta = timedelta(seconds=30)
    max_retry: timedelta = timedelta(hours=1)
    max_attempts: int = 8
    organiser: tuple[str, str] = ("VSS", "noreply@vss.example")
    case_link: str = "http://127.0.0.1:8001/v1/cases/{case_id}"
    ack_link: str = "http://127.0.0.1:8003/v1/acknowledgements/{delivery_key}?signature={signature}"
    batch: int = 100
    concurrency: int = 16  # lanes per channel at most (a channel says how many it runs)
    organisations: Mapping[str, Organisation] = field(default_factory=dict)
    plan_links: PlanLinks | None = None  # None: messages carry no plan link
    answer_links: AnswerLinks | None = None  # None: invitations carry no answer link


@dataclass(frozen=True, slots=True)
class PlanLinks:
    """How the sender makes a recipient's own plan link (ADR 0016): the query API's public URL
    and the key it checks links with."""

    base_url: str
    key: bytes = field(repr=False)

    def link(self, case_id: str, holder: str, kind: str) -> str:
        return plan_link(self.base_url, self.key, case_id, holder, LinkKind(kind))


@dataclass(frozen=True, slots=True)
class AnswerLinks:
    """How the sender makes an invitee's own answer link (ADR 0020): the meetings API's public
    URL and the key the meetings service checks answer links with."""

    base_url: str
    key: bytes = field(repr=False)

    def link(self, case_id: str, meeting_id: str, invitee_id: str) -> str:
        return answer_link(self.base_url, self.key, case_id, meeting_id, invitee_id)


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """The key before the last rotation, and when it was retired."""

    key: bytes
    retired_at: datetime


class Signer:
    """Signs acknowledgement links (the link is the credential: no login on a phone in a crisis).

    After a rotation, links signed with the previous key stay valid for ``overlap`` after it
    was retired (an urgent alert's link must work through its escalation), then no longer.
    """

    def __init__(
        self,
        key: bytes,
        previous: RetiredKey | None = None,
        overlap: timedelta = timedelta(hours=72),
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.key = key
        self.previous = previous
        self.overlap = overlap
        self._now = now

    @staticmethod
    def _sign(key: bytes, delivery_key: str) -> str:
        mac = hmac.new(key, f"ack:{delivery_key}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def sign(self, delivery_key: str) -> str:
        return self._sign(self.key, delivery_key)

    def valid(self, delivery_key: str, signature: str) -> bool:
        # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
        given = signature.encode()
        if hmac.compare_digest(self.sign(delivery_key).encode(), given):
            return True
        previous = self.previous
        if previous is None:
            return False
        now = self._now() if self._now is not None else datetime.now(previous.retired_at.tzinfo)
        return now < previous.retired_at + self.overlap and hmac.compare_digest(
            self._sign(previous.key, delivery_key).encode(), given
        )


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A delivery's message made before its claim, while its lane sent the one before."""

    delivery_key: str
    message: OutgoingMessage
    sender: ChannelSender


def _fulfil(
    future: asyncio.Future[_Ahead | None], make: Callable[[DeliveryRow], _Ahead | None], row: DeliveryRow
) -> None:
    if not future.done():
        future.set_result(make(row))


async def _all_ended(runs: Iterable[Awaitable[int]]) -> list[int]:
    """Each run's result once every run has ended; the first failure raised then, not before.

    A lane that fails must not leave its siblings sending from a queue that the next pass no
    longer sees: that pass could then put a recipient's next message in flight beside one
    still being sent (ADR 0025). So nothing is cancelled (a send cut off could be left
    accepted and unrecorded) and the failure waits for the others to end."""
    results = await asyncio.gather(*runs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[int], results)


# Audiences kept in memory between events of their case (the most recently applied cases):
# about 140 KiB each (the document and the object) for a case with a dozen meetings of eight
# invitees, so some 35 MiB at most.
AUDIENCES_KEPT = 256


def _id(*parts: object) -> str:
    return str(uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


class NotificationsService:
    def __init__(
        self,
        store: Store,
        renderer: Renderer,
        channels: Mapping[Channel, ChannelSender],
        clock: Clock,
        signer: Signer,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.channels = channels
        self.clock = clock
        self.signer = signer
        self.policy = policy or Policy()
        self.counters = Counters()
        self._slots: tuple[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] | None = None
        # Called (from the consumer's thread) when new deliveries are recorded, so the sender
        # goes at once instead of at its next look: an urgent message must not wait.
        self.on_decided: Callable[[], None] | None = None
        self._batching = threading.local()  # a batch of events being applied in this thread
        # The audiences last written, as read back (the stored document and its object), by
        # case: see _audience.
        self._audiences: OrderedDict[str, tuple[dict[str, Any], Audience]] = OrderedDict()
        # How often urgent deliveries were decided: a pass sending non-urgent ones looks again.
        self._urgent_decided = 0
        # How often deliveries were committed, per channel: a channel that has sent its rows
        # looks again, and the sender wakes only the channels that have something new. Every
        # channel's key is there from the start (read from another thread than it is written).
        self.decided_on: dict[str, int] = {channel.value: 0 for channel in Channel}

    # -------------------------------------------------------------------------- decide
    def apply(
        self,
        consumer: str,
        *,
        case_id: UUID,
        event_id: str,
        event_type: str,
        recorded_at: datetime,
        data: CaseEventData | MeetingEventData,
        stream_sequence: int,
        case_position: int | None = None,
        log_position: int | None = None,
    ) -> bool:
        """Decide on one consumed event; False if it was applied already (a redelivery).

        Every decision depends on history alone, so a replay decides what live decided: the
        consent is read on the event's own day, and a meeting event is judged by the case's
        people and consent as of ``case_position``, the case log position it followed (kept
        in ``audience_history``), not by whatever the case consumer has reached when it
        arrives. For a case event ``case_position`` is its own position in the case log.
        Whether a decided message may still *leave* is asked again, on the day it would
        leave, before it is sent (:meth:`_why_not`): a message decided while catching up
        after a consent ended is withdrawn, on the record, not sent.

        ``log_position`` is the event's position in its own stream's log (a case event's is
        ``case_position`` when not given). In a store rebuilt from history, a delivery decided
        for an event at or before the last one the adopted record's deliveries were decided
        for, and that the record does not know, was not decided by the version that ran then
        (a rule added since): it is settled as not sent, on the record
        (:data:`DECIDED_BY_A_LATER_VERSION`), never sent now. Only what the record's history
        had not reached goes.
        """
        if log_position is None and isinstance(data, CaseEventData):
            log_position = case_position
        if isinstance(data, CaseEventData) and CASE_HANDLERS.handler(data.TYPE) is None:
            # No message, and no change to who may be told (the table's ignored types): only
            # the position moves, without reading or writing the case's audience.
            return self._pass(consumer, stream_sequence, event_id, str(case_id), recorded_at, case_position)
        with self.store.lock:
            if stream_sequence <= self.store.applied_through(consumer):
                return False
            value = self.store.audience(str(case_id))
            audience = self._audience(case_id, value)
            now = self.clock.now()
            day = local_day(recorded_at)
            history = in_force = None
            if isinstance(data, CaseEventData):
                before = audience.people_and_consent() if case_position is not None else None
                outcome = on_case_event(audience, data, recorded_at, day)
                if before is not None and (after := audience.people_and_consent()) != before:
                    history = after
            else:
                judged = audience
                kept = None if case_position is None else self.store.audience_at(str(case_id), case_position)
                if kept is not None:  # else (older events, older stores): the state as it is
                    in_force, state = kept
                    judged = Audience.from_json(state, meetings=False)
                    judged.meetings = audience.meetings  # as they stand (taken back below)
                outcome = on_meeting_event(judged, data, day)
                audience.meetings = judged.meetings
            at = iso(recorded_at)
            calendars: dict[int, str] = {}  # the notices of one invitation share its .ics
            deliveries = [
                d
                for notice in outcome.notices
                for d in self._deliveries(notice, case_id, event_id, event_type, recorded_at, calendars)
            ]
            cancelled = self._withdrawn(audience, now) if outcome.recheck_pending else []
            cancelled += self._not_decided_then(consumer, log_position, deliveries, now)
            opened = None
            if outcome.alert_opened is not None:
                escalate_at = iso(recorded_at + self.policy.escalate_after)
                opened = (str(outcome.alert_opened), at, escalate_at)
            closed = (str(outcome.alert_closed), at) if outcome.alert_closed else None
            try:
                self.store.record_decisions(
                    Decisions(
                        consumer=consumer,
                        stream_sequence=stream_sequence,
                        event_id=event_id,
                        case_id=str(case_id),
                        at=at,
                        audience=None if value == (kept_json := audience.to_json()) else kept_json,
                        deliveries=deliveries,
                        cancelled=cancelled,
                        alert_opened=opened,
                        alert_closed=closed,
                        log_position=case_position if isinstance(data, CaseEventData) else None,
                        history=history,
                        history_in_force=in_force,
                    )
                )
            except AlreadyApplied:
                return False
            self._keep(str(case_id), kept_json, audience)
            self.counters.decided += len(deliveries)
            if any(d.urgent for d in deliveries):
                self._urgent_decided += 1
        if deliveries:
            self._decided({d.channel for d in deliveries})
        return True

    def _audience(self, case_id: UUID, value: dict[str, Any] | None) -> Audience:
        """The case's audience as stored (``value``): the object this process last wrote for
        it when the stored document is still the one it wrote, else read from the document.

        Reading it back is most of an event's work on a case with many meetings (their
        invitees), and the same process wrote it one event before. Comparing the documents
        keeps it right whoever wrote last (another process after a takeover, a rolled back
        batch). The entry is taken out: an event that fails leaves none to be reused.
        """
        kept = self._audiences.pop(str(case_id), None)
        if value is None:
            return Audience(case_id=case_id)
        if kept is not None and kept[0] == value:
            return kept[1]
        return Audience.from_json(value)

    def _keep(self, case_id: str, document: dict[str, Any], audience: Audience) -> None:
        """Keep ``audience`` (what ``document`` reads back as) for the case's next event."""
        self._audiences[case_id] = (document, audience)
        if len(self._audiences) > AUDIENCES_KEPT:
            self._audiences.popitem(last=False)

    def _pass(
        self,
        consumer: str,
        stream_sequence: int,
        event_id: str,
        case_id: str,
        recorded_at: datetime,
        case_position: int | None,
    ) -> bool:
        """Record a case event that changes nothing here as applied (its position only)."""
        with self.store.lock:
            if stream_sequence <= self.store.applied_through(consumer):
                return False
            try:
                self.store.record_decisions(
                    Decisions(
                        consumer=consumer,
                        stream_sequence=stream_sequence,
                        event_id=event_id,
                        case_id=case_id,
                        at=iso(recorded_at),
                        audience=None,
                        log_position=case_position,
                    )
                )
            except AlreadyApplied:
                return False
        return True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The events applied inside (:meth:`apply`, in this thread) commit together, with the
        position of the last, or none of them; the sender is woken once, after the commit (it
        would not see deliveries not committed yet)."""
        self._batching.decided = False
        self._batching.channels = set()
        self._batching.active = True
        try:
            with self.store.lock, self.store.transaction():
                yield
        finally:
            self._batching.active = False
        self._count(self._batching.channels)
        if self._batching.decided and self.on_decided is not None:
            self.on_decided()

    def _decided(self, channels: set[str]) -> None:
        if getattr(self._batching, "active", False):
            self._batching.decided = True
            self._batching.channels |= channels
            return
        self._count(channels)
        if self.on_decided is not None:
            self.on_decided()

    def _count(self, channels: Iterable[str]) -> None:
        """Deliveries for ``channels`` are committed: their senders look again."""
        for channel in channels:
            self.decided_on[channel] += 1

    def _deliveries(
        self,
        notice: Notice,
        case_id: UUID,
        cause_id: str,
        cause_type: str,
        at: datetime,
        calendars: dict[int, str] | None = None,
    ) -> list[NewDelivery]:
        """``notice``'s deliveries; ``calendars``: the .ics made so far for the same event, by
        the identity of their calendar part (one part is shared by the notices it went to)."""
        person = notice.person
        organisation = self.policy.organisations.get(person.organisation_id or "")
        addresses: list[tuple[Channel, str]] = []
        if person.email:
            addresses.append((Channel.EMAIL, person.email))
        if notice.urgent and person.phone:
            addresses.append((Channel.SMS, person.phone))
        if organisation is not None and organisation.webhook is not None:
            addresses.append((Channel.WEBHOOK, organisation.webhook.url))
        calendar = method = None
        if notice.calendar is not None:
            part = notice.calendar
            method = part.method
            calendar = calendars.get(id(part)) if calendars is not None else None
            if calendar is None:
                calendar = meeting_ics(
                    part.meeting,
                    method=part.method,
                    organizer=self.policy.organiser,
                    now=at,
                    attendees=part.attendees,
                ).decode()
                if calendars is not None:
                    calendars[id(part)] = calendar
        deliveries = []
        context = _jsonable(notice.context) if addresses else {}  # one per notice, shared by its rows
        for channel, address in addresses:
            key = _id(cause_id, person.key, channel.value)
            deliveries.append(
                NewDelivery(
                    delivery_key=key,
                    case_id=str(case_id),
                    cause_event_id=cause_id,
                    cause_event_type=cause_type,
                    template=notice.template,
                    person=person.to_json(),
                    channel=channel.value,
                    address=address,
                    context=context,
                    calendar=calendar if channel is Channel.EMAIL else None,
                    calendar_method=method if channel is Channel.EMAIL else None,
                    urgent=notice.urgent,
                    warning_id=str(notice.warning_id) if notice.warning_id else None,
                    message_id=f"<{key}@vss.se>",
                    created_at=iso(at),
                )
            )
        return deliveries

    def _withdrawn(self, audience: Audience, now: datetime) -> list[tuple[str, RecordEvent]]:
        """Pending deliveries that may no longer go (consent, membership, closure): cancelled,
        on the record with the reason."""
        at, today = iso(now), local_day(now)
        cancelled = []
        # Only pending rows: a claimed one is on its way, and its outcome will be its record.
        for row in self.store.pending_of_case(str(audience.case_id)):
            reason = audience.why_not_told(Person.from_json(row.person), _decided_at(row), today)
            if reason is None:
                continue
            reason = _as_it_stands(row, reason)
            cancelled.append((row.delivery_key, self._withdrawal(row, at, max(row.attempts, 1), reason)))
        return cancelled

    def _not_decided_then(
        self, consumer: str, log_position: int | None, deliveries: Sequence[NewDelivery], now: datetime
    ) -> list[tuple[str, RecordEvent]]:
        """The deliveries a rebuilt store decided for history the adopted record had passed
        that the record does not know (see :meth:`apply`): settled as not sent, on the record."""
        reached = self.store.record_reached(consumer)
        if reached is None or log_position is None or log_position > reached:
            return []
        at = iso(now)
        return [
            (d.delivery_key, self._withdrawal(d, at, 1, DECIDED_BY_A_LATER_VERSION))
            for d in deliveries
            if not self.store.record_knows(d.delivery_key)
        ]

    def _withdrawal(self, row: NewDelivery, at: str, attempts: int, reason: str = NOT_COVERED) -> RecordEvent:
        return self._record(
            ne.NotificationFailed,
            row,
            "withdrawn",
            at,
            failed_at=at,
            reason=reason,
            permanent=True,
            attempts=attempts,
        )

    def _why_not(self, row: DeliveryRow) -> str | None:
        """Why this delivery may not go today, by the case's current audience (lock held);
        None if it may. The same rule as a cancellation at event time (:meth:`_withdrawn`)."""
        value = self.store.audience(row.case_id)
        if value is None:
            return None
        today = local_day(self.clock.now())
        audience = Audience.from_json(value, meetings=False)  # the rule reads none
        return audience.why_not_told(Person.from_json(row.person), _decided_at(row), today)

    def recover_claims(self) -> int:
        """At start, before sending: settle the claims a stopped sender left; how many.

        Such a message may or may not have left (the crash window). If it may still go
        (:meth:`_why_not`) the claim is released and the message sent again with the same
        Message-ID; if not, it is cancelled: a second copy must not go to someone the
        consent no longer covers, who left or whose case closed, and the record says it may
        have left before.
        """
        recovered = 0
        with self.store.lock:  # no consumer decides in between (apply holds it too)
            for row in self.store.claimed():
                why_not = self._why_not(row)
                if why_not is None:
                    # Kept on the row: if it is cancelled before it goes again, the record
                    # must still say the first attempt may have left.
                    changed = self.store.release(row.delivery_key, MAY_HAVE_LEFT)
                else:
                    at = iso(self.clock.now())
                    reason = f"{why_not} ({MAY_HAVE_LEFT})"
                    attempts = max(row.attempts, 1)
                    outcome = AttemptOutcome(
                        "cancelled", attempts, at, reason, record=self._withdrawal(row, at, attempts, reason)
                    )
                    changed = self.store.finish(row.delivery_key, outcome)
                recovered += int(changed)
        if recovered:
            log.warning("notifications.claims_recovered", deliveries=recovered)
        return recovered

    # ------------------------------------------------------------------------- deliver
    async def deliver_due(self, now: datetime | None = None, channel: Channel | None = None) -> int:
        """Hand every delivery due by ``now`` (of ``channel``, or of every channel) to its
        channel; the number of attempts made.

        The due rows are read a batch at a time and sent through *lanes*: as many per channel
        as it sends at once (SMTP: one per connection), taking the channel's rows in the
        batch's order (urgent first), one at a time, from one :class:`RecipientQueue`: a
        recipient's next message is taken, by any lane, only once the outcome of their message
        before is stored, so two never travel at once nor overtake each other (ADR 0025). A
        lane stores the outcome of its last message in the same transaction as the claim of
        its next one (:meth:`_claim`), and its last outcome alone when it has no next: one
        commit per message, and still at most one message per lane that a channel may have
        accepted and whose outcome is not stored (the window of ADR 0007: the outcome is
        stored before the lane's next message is handed over). Each channel reads again on
        its own (:meth:`_deliver_channel`): none waits for another's sends.
        """
        now = now or self.clock.now()
        decided, seen = dict(self.decided_on), self._urgent_decided
        name = None if channel is None else channel.value
        rows = await asyncio.to_thread(self.store.due, iso(now), self.policy.batch, name)
        by_channel: dict[str, list[DeliveryRow]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        full = len(rows) >= self.policy.batch
        if full and channel is None:  # a full batch may have left a channel's rows unread
            for sender in self.channels:
                by_channel.setdefault(sender.value, [])
        channels = [
            self._deliver_channel(of, due, now, full=full, decided=decided[of], seen=seen)
            for of, due in by_channel.items()
        ]
        return sum(await _all_ended(channels))

    async def _deliver_channel(
        self, channel: str, rows: list[DeliveryRow], now: datetime, *, full: bool, decided: int, seen: int
    ) -> int:
        """Send one channel's due ``rows`` through its lanes, then read its due rows again while
        there may be more: the batch was full, the lanes stopped to look again, or deliveries
        were decided meanwhile. A channel never waits for another's sends (an e-mail not for
        the SMS files written beside it), nor for the next pass for what was decided while it
        sent."""
        attempts = 0
        while True:
            queue = RecipientQueue(rows)
            look_again = partial(self._look_again, seen, queue)
            attempts += sum(
                await _all_ended(
                    self._lane(channel, queue, lane, look_again) for lane in range(self._lanes_of(channel))
                )
            )
            if not (queue or full or self.decided_on[channel] != decided):
                return attempts
            decided, seen = self.decided_on[channel], self._urgent_decided
            # Deliveries decided since ``now`` are due when decided: read at the time of now.
            now = max(now, self.clock.now())
            rows = await asyncio.to_thread(self.store.due, iso(now), self.policy.batch, channel)
            if not rows:
                return attempts
            full = len(rows) >= self.policy.batch

    def _look_again(self, seen: int, queue: RecipientQueue) -> bool:
        """Urgent deliveries decided since the rows were read must not wait behind the
        non-urgent ones still queued: the lanes stop, and the rows are read again (urgent
        first). Queued urgent ones go first anyway: no need then."""
        return self._urgent_decided != seen and any(not r.urgent for r in queue)

    def _lanes_of(self, channel: str) -> int:
        sender = self.channels.get(Channel(channel))
        return max(1, min(sender.concurrency if sender is not None else 1, self.policy.concurrency))

    async def _lane(
        self, channel: str, rows: RecipientQueue, lane: int, look_again: Callable[[], bool]
    ) -> int:
        """Send the channel's ``rows`` (shared with its other lanes) one at a time, until they
        are sent or ``look_again`` says to stop; attempts made."""
        made = 0
        # The channel's slot first, then each claim: a delivery waits for its channel while
        # still pending (a withdrawal meanwhile cancels it). Held for the lane's whole run, so
        # that an outcome never waits for a slot before it is stored.
        async with self._slot(channel):
            unsettled: tuple[DeliveryRow, AttemptOutcome] | None = None
            ahead: asyncio.Future[_Ahead | None] | None = None
            try:
                while rows and not look_again():
                    row = rows.take(lane)
                    if row is None:
                        # Every recipient queued is on another lane: this lane's last outcome
                        # is stored now (its recipient may be the one queued), then it waits.
                        if unsettled is not None:
                            stored = await asyncio.to_thread(self._store_outcome, *unsettled)
                            self._report(unsettled[0], *stored)
                            rows.release(lane, unsettled[0])
                            unsettled = None
                        else:
                            await rows.changed()
                        continue
                    claimed, settled = await asyncio.to_thread(self._claim, row, unsettled)
                    if unsettled is not None:
                        if settled is not None:
                            self._report(unsettled[0], *settled)
                        rows.release(lane, unsettled[0])
                    unsettled = None
                    ready = await ahead if ahead is not None else None
                    ahead = None
                    if not claimed:
                        rows.release(lane, row)
                        continue
                    made += 1
                    if (following := rows.peek(lane)) is not None:
                        # The next one's message is made while this one's send waits for the
                        # server: on the loop, as it costs less than a hop to a worker thread.
                        ahead = asyncio.get_running_loop().create_future()
                        asyncio.get_running_loop().call_soon(_fulfil, ahead, self._made_ahead, following)
                    try:
                        if ready is None or ready.delivery_key != row.delivery_key:
                            ready = None
                        unsettled = (row, await self._send(row, row.attempts + 1, ready))
                    except Exception as error:
                        # The outcome could not be built: settled as best it can be, not left
                        # claimed until the next start.
                        await asyncio.to_thread(self._unclaim, row, error)
                        rows.release(lane, row)
                if ahead is not None:
                    await ahead
                if unsettled is not None:
                    self._report(unsettled[0], *await asyncio.to_thread(self._store_outcome, *unsettled))
            finally:
                rows.leave(lane)
        return made

    def _slot(self, channel: str) -> asyncio.Semaphore:
        """The channel's sends at once (its ``concurrency``), shared by every pass on this loop."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, {})
        slots = self._slots[1]
        if channel not in slots:
            sender = self.channels.get(Channel(channel))
            slots[channel] = asyncio.Semaphore(max(1, sender.concurrency if sender is not None else 1))
        return slots[channel]

    def _report(self, row: DeliveryRow, outcome: AttemptOutcome, stored: bool) -> None:
        if stored and outcome.status == "sent":
            self.counters.sent += 1
        if outcome.status != "sent":
            log.info(
                "notifications.delivery_" + outcome.status,
                delivery=row.delivery_key,
                channel=row.channel,
                attempts=outcome.attempts,
                error=outcome.error,
            )

    def _store_outcome(self, row: DeliveryRow, ended: AttemptOutcome) -> tuple[AttemptOutcome, bool]:
        """Store a claimed delivery's outcome on its own (the lane's last); (as stored, stored)."""
        try:
            return self._settle(row, ended)
        except Exception as error:
            # The store failed (busy, connection lost): the delivery is settled as best it can
            # be, not left claimed until the next start.
            return ended, self._unclaim(row, error, ended)

    def _made_ahead(self, row: DeliveryRow) -> _Ahead | None:
        """``row``'s message, rendered and prepared by its channel before it is claimed (pure
        CPU, nothing sent); None if that fails (:meth:`_send` then fails as it would have)."""
        try:
            message, sender = self._prepare(row)
            sender.prepare(message)
        except Exception:
            return None
        return _Ahead(row.delivery_key, message, sender)

    async def _send(self, row: DeliveryRow, attempt: int, ready: _Ahead | None = None) -> AttemptOutcome:
        """Hand a claimed delivery to its channel; how the attempt ended (not yet stored)."""
        try:
            message, sender = (ready.message, ready.sender) if ready is not None else self._prepare(row)
            await sender.send(message)
        except PermanentFailure as error:
            return self._failed(row, attempt, _short(error))
        except Exception as error:
            # TemporaryFailure, or a channel's own error: retried with backoff like one, so
            # the claim is settled now instead of holding the delivery until a restart.
            if attempt < self.policy.max_attempts:
                delay = min(self.policy.first_retry * 2 ** (attempt - 1), self.policy.max_retry)
                next_at = iso(self.clock.now() + delay)
                self.counters.retried += 1
                return AttemptOutcome("retry", attempt, iso(self.clock.now()), _short(error), next_at)
            return self._failed(row, attempt, f"gave up after {attempt} attempts: {_short(error)}")
        at = iso(self.clock.now())
        record = self._record(ne.NotificationSent, row, "sent", at, sent_at=at, attempts=attempt)
        return AttemptOutcome("sent", attempt, at, record=record)

    def _claim(
        self, row: DeliveryRow, unsettled: tuple[DeliveryRow, AttemptOutcome] | None = None
    ) -> tuple[bool, tuple[AttemptOutcome, bool] | None]:
        """Store the outcome of the lane's previous message (``unsettled``) and claim ``row``
        for sending, in one transaction; (claimed, (the previous outcome as stored, stored)).

        Not claimed if a cancellation won, or if it may no longer go (:meth:`_why_not`: then
        it is cancelled, on the record, with the reason, in the same transaction). A consent
        ends by its date passing, which no event announces: a message decided before (or a
        retry) would otherwise leave after the end; and a retry claimed before a member left
        or the case closed was not pending then, so nothing cancelled it. Under the store's
        lock, so no decision comes between the look at the audience and the update.

        If the store fails, the previous outcome is stored on its own as before
        (:meth:`_store_outcome`), and ``row`` is claimed on its own: a failure of the look at
        the audience leaves it to wait ``first_retry``, its attempts unchanged.
        """
        with self.store.lock:
            try:
                why_not = self._why_not(row)
            except Exception as error:
                settled = self._store_outcome(*unsettled) if unsettled is not None else None
                self._look_failed(row, error)
                return False, settled
            try:
                with self.store.transaction():
                    settled = self._settle(*unsettled) if unsettled is not None else None
                    claimed = self.store.claim(row.delivery_key)
                    if claimed and why_not is not None:
                        why_not = _as_it_stands(row, why_not)
                        at, attempts = iso(self.clock.now()), max(row.attempts, 1)
                        record = self._withdrawal(row, at, attempts, why_not)
                        outcome = AttemptOutcome("cancelled", attempts, at, why_not, record=record)
                        self.store.finish(row.delivery_key, outcome)
            except Exception as error:
                log.warning("notifications.claim_unsettled", delivery=row.delivery_key, error=_short(error))
                settled = self._store_outcome(*unsettled) if unsettled is not None else None
                return self._claim_alone(row), settled
        if claimed and why_not is not None:
            log.info("notifications.delivery_cancelled", delivery=row.delivery_key, error=why_not)
            return False, settled
        return claimed, settled

    def _claim_alone(self, row: DeliveryRow) -> bool:
        """Claim ``row`` in a transaction of its own (after a failed :meth:`_claim`)."""
        with self.store.lock:
            try:
                if not self.store.claim(row.delivery_key):
                    return False
            except Exception as error:  # nothing claimed: it stays pending for the next look
                log.warning("notifications.claim_failed", delivery=row.delivery_key, error=_short(error))
                return False
            try:
                why_not = self._why_not(row)
                if why_not is None:
                    return True
                why_not = _as_it_stands(row, why_not)
                at, attempts = iso(self.clock.now()), max(row.attempts, 1)
                record = self._withdrawal(row, at, attempts, why_not)
                self.store.finish(
                    row.delivery_key, AttemptOutcome("cancelled", attempts, at, why_not, record=record)
                )
            except Exception as error:  # nothing was sent: tried again after a pause
                self._unclaim(row, error)
                return False
        log.info("notifications.delivery_cancelled", delivery=row.delivery_key, error=why_not)
        return False

    def _look_failed(self, row: DeliveryRow, error: Exception) -> None:
        """The look at the audience before a claim failed: ``row`` waits ``first_retry``, its
        attempts unchanged, with the error on the row (nothing was sent)."""
        with self.store.lock:
            try:
                if self.store.claim(row.delivery_key):
                    self._unclaim(row, error)
            except Exception as again:  # nothing claimed: it stays pending for the next look
                log.warning("notifications.claim_failed", delivery=row.delivery_key, error=_short(again))

    def _unclaim(self, row: DeliveryRow, error: Exception, outcome: AttemptOutcome | None = None) -> bool:
        """After the store failed on a claimed delivery: settle it as best it can, so it is
        tried again in this process instead of staying claimed until the next start.

        The attempt's ``outcome`` is stored once more (a busy database or a lost connection
        often answers the second time; a retry is checked again when claimed); without one
        (nothing sent, or nothing known of it) it waits ``first_retry``, its attempts
        unchanged. If that fails too, the claim is released: a message the server may have
        accepted goes again with the same Message-ID, as after a crash. If even that fails,
        the claim stays until :meth:`recover_claims` at the next start. True if ``outcome``
        (as given) was stored.
        """
        log.warning("notifications.claim_unsettled", delivery=row.delivery_key, error=_short(error))
        settled = outcome
        if settled is None:
            now = self.clock.now()
            reason = f"not settled: {_short(error)}"
            settled = AttemptOutcome(
                "retry", row.attempts, iso(now), reason, iso(now + self.policy.first_retry)
            )
        with self.store.lock:
            try:
                return self.store.finish(row.delivery_key, settled) and outcome is not None
            except Exception as again:
                log.warning("notifications.claim_unsettled", delivery=row.delivery_key, error=_short(again))
            try:
                self.store.release(row.delivery_key)
            except Exception as again:
                log.error("notifications.claim_left", delivery=row.delivery_key, error=_short(again))
        return False

    def _settle(self, row: DeliveryRow, outcome: AttemptOutcome) -> tuple[AttemptOutcome, bool]:
        """Store a claimed delivery's outcome; a retry that may no longer go is cancelled.

        A withdrawal, a member leaving or the case closing while the message was claimed
        could not cancel it; had it gone out, fine (it was on its way), but a retry must not
        send it later. Under the store's lock, so no decision comes between the look at the
        audience and the update.
        """
        with self.store.lock:
            if outcome.status == "retry" and (why_not := self._why_not(row)) is not None:
                at, attempts = outcome.at, outcome.attempts
                record = self._withdrawal(row, at, attempts, why_not)
                outcome = AttemptOutcome("cancelled", attempts, at, why_not, record=record)
            return outcome, self.store.finish(row.delivery_key, outcome)

    def _failed(self, row: DeliveryRow, attempt: int, reason: str) -> AttemptOutcome:
        at = iso(self.clock.now())
        reason = reason[:200]  # the record's reason is a short text
        record = self._record(
            ne.NotificationFailed,
            row,
            "failed",
            at,
            failed_at=at,
            reason=reason,
            permanent=True,
            attempts=attempt,
        )
        self.counters.failed += 1
        return AttemptOutcome("failed", attempt, at, error=reason, record=record)

    def _prepare(self, row: DeliveryRow) -> tuple[OutgoingMessage, ChannelSender]:
        """The rendered message and its channel; TemporaryFailure if the configuration lacks one.

        A template that does not render (an edited copy naming something the context lacks)
        or a channel that is not configured is the deployment's fault, not the message's:
        retried with backoff like an SMTP login refused (templates are re-read when their
        file changes), and recorded as failed when the attempts run out. Never an exception
        out of :meth:`deliver_due`: that left the delivery pending with no record and no
        backoff, and ended every pass early.
        """
        sender = self.channels.get(Channel(row.channel))
        if sender is None:
            raise TemporaryFailure(f"no {row.channel} channel is configured")
        try:
            return self._message(row), sender
        except Exception as error:
            raise TemporaryFailure(f"cannot render {row.template!r}: {_short(error)}") from error

    def _message(self, row: DeliveryRow) -> OutgoingMessage:
        context = {
            **row.context,
            "recipient": row.person["name"],
            "case_reference": row.case_id[:8],
            "case_link": self.policy.case_link.format(case_id=row.case_id),
            "urgent": row.urgent,
        }
        holder = row.context.get(PLAN_LINK_HOLDER)
        links = self.policy.plan_links
        # Made as the message is sent, from the case id, the holder and the key alone: the
        # same link on every replay, and none kept in the store.
        context["plan_link"] = (
            links.link(row.case_id, holder, row.context[PLAN_LINK_KIND]) if holder and links else None
        )
        meeting_id = row.context.get(ANSWER_MEETING)
        answers = self.policy.answer_links
        # The recipient's own answer link: made as the message is sent, like the plan link.
        context["answer_link"] = (
            answers.link(row.case_id, meeting_id, row.person["key"]) if meeting_id and answers else None
        )
        if row.urgent:
            signature = self.signer.sign(row.delivery_key)
            context["ack_link"] = self.policy.ack_link.format(
                delivery_key=row.delivery_key, signature=signature
            )
        subject, body = self.renderer.render(row.template, context)
        attachments: tuple[Attachment, ...] = ()
        if row.calendar is not None:
            content_type = f'text/calendar; method={row.calendar_method}; charset="utf-8"'
            attachments = (Attachment("invite.ics", content_type, row.calendar.encode()),)
        organisation = self.policy.organisations.get(row.person.get("organisation_id") or "")
        secret = organisation.webhook.secret if organisation and organisation.webhook else None
        return OutgoingMessage(
            delivery_key=row.delivery_key,
            message_id=row.message_id,
            channel=Channel(row.channel),
            address=row.address,
            subject=subject,
            body=body,
            urgent=row.urgent,
            attachments=attachments,
            headers={"X-VSS-Case": row.case_id[:8], "X-VSS-Delivery": row.delivery_key},
            payload={
                "delivery_key": row.delivery_key,
                "message_id": row.message_id,
                "case_id": row.case_id,
                "template": row.template,
                "urgent": row.urgent,
                "recipient": {
                    k: row.person.get(k) for k in ("key", "name", "role", "organisation_id", "user_id")
                },
                "subject": subject,
                "body": body,
                "link": context["case_link"],
                "ack_link": context.get("ack_link"),
            },
            secret=secret,
        )

    def _record(
        self,
        model: type[ne.NotificationSent] | type[ne.NotificationFailed],
        row: NewDelivery,
        outcome: str,
        at: str,
        **fields: Any,
    ) -> RecordEvent:
        person = Person.from_json(row.person)
        payload = model(
            delivery_key=row.delivery_key,
            message_id=row.message_id,
            cause_event_id=row.cause_event_id,
            cause_event_type=row.cause_event_type,
            template=row.template,
            recipient=person.recipient(),
            channel=ne.DeliveryChannel(row.channel),
            urgent=row.urgent,
            warning_id=UUID(row.warning_id) if row.warning_id else None,
            **fields,
        ).model_dump(mode="json")
        return RecordEvent(_id(row.delivery_key, outcome), row.case_id, model.TYPE, payload, at)

    # ------------------------------------------------------------------------ escalate
    def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every early warning unacknowledged past its time; the number escalated."""
        now = now or self.clock.now()
        escalated = 0
        duty = {o: org.duty for o, org in self.policy.organisations.items() if org.duty is not None}
        for alert in self.store.due_alerts(iso(now)):
            with self.store.lock:
                value = self.store.audience(alert.case_id)
                if value is None:
                    continue
                audience = Audience.from_json(value)
                triggered = datetime.fromisoformat(alert.triggered_at)
                notices = escalation(audience, UUID(alert.warning_id), triggered, duty, local_day(now))
                cause = f"escalation:{alert.warning_id}"
                deliveries = [
                    d
                    for n in notices
                    for d in self._deliveries(n, audience.case_id, cause, "escalation", now)
                ]
                unacknowledged = sum(
                    1
                    for row in self.store.deliveries_of_case(alert.case_id)
                    if row.warning_id == alert.warning_id and row.acknowledged_at is None
                )
                payload = ne.NotificationEscalated(
                    warning_id=UUID(alert.warning_id),
                    triggered_at=triggered,
                    escalated_at=now,
                    organisation_ids=sorted({n.person.organisation_id or "" for n in notices} - {""}),
                    unacknowledged=unacknowledged,
                ).model_dump(mode="json")
                record = RecordEvent(
                    _id(cause, "escalated"), alert.case_id, ne.NotificationEscalated.TYPE, payload, iso(now)
                )
                if self.store.escalate(alert.warning_id, iso(now), deliveries, record):
                    escalated += 1
                    self._count({d.channel for d in deliveries})
                    self.counters.escalated += 1
                    log.warning(
                        "notifications.escalated", warning=alert.warning_id, deliveries=len(deliveries)
                    )
        if escalated and self.on_decided is not None:
            self.on_decided()
        return escalated

    # --------------------------------------------------------------------- acknowledge
    def acknowledge(self, delivery_key: str) -> DeliveryRow | None:
        """Record that the recipient confirmed; None for an unknown delivery."""
        row = self.store.delivery(delivery_key)
        if row is None:
            return None
        at = self.clock.now()
        record = None
        if row.warning_id:
            payload = ne.NotificationAcknowledged(
                delivery_key=delivery_key,
                warning_id=UUID(row.warning_id),
                recipient=Person.from_json(row.person).recipient(),
                acknowledged_at=at,
            ).model_dump(mode="json")
            record = RecordEvent(
                _id(delivery_key, "acknowledged"),
                row.case_id,
                ne.NotificationAcknowledged.TYPE,
                payload,
                iso(at),
            )
        self.store.acknowledge(delivery_key, iso(at), record)
        return self.store.delivery(delivery_key)

    def deliveries(self, case_id: UUID) -> Sequence[DeliveryRow]:
        return self.store.deliveries_of_case(str(case_id))

    def summary(self) -> dict[str, Any]:
        return self.store.summary()


def outcomes_of_record(
    events: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> tuple[list[AdoptedOutcome], list[AdoptedAlert]]:
    """What the delivery record says became of each delivery and alert, from its events
    ((event id, type, data), in the record's order): a later outcome replaces an earlier one
    (a retry's failure), the first acknowledgement counts. For a store rebuilt from history,
    so that nothing already sent, failed or withdrawn is sent again.
    """
    outcomes: dict[str, AdoptedOutcome] = {}
    alerts: dict[str, AdoptedAlert] = {}
    for event_id, type_name, data in events:
        key = str(data.get("delivery_key", ""))
        if type_name == ne.NotificationSent.TYPE:
            sent_at = _iso_text(data["sent_at"])
            acknowledged = outcomes[key].acknowledged_at if key in outcomes else None
            outcomes[key] = AdoptedOutcome(key, "sent", int(data["attempts"]), None, sent_at, acknowledged)
        elif type_name == ne.NotificationFailed.TYPE:
            status = "cancelled" if event_id == _id(key, "withdrawn") else "failed"
            outcomes[key] = AdoptedOutcome(key, status, int(data["attempts"]), str(data["reason"]))
        elif type_name == ne.NotificationAcknowledged.TYPE:
            at = _iso_text(data["acknowledged_at"])
            if key in outcomes and outcomes[key].acknowledged_at is None:
                outcomes[key] = replace(outcomes[key], acknowledged_at=at)
            warning = str(data["warning_id"])
            alert = alerts.get(warning, AdoptedAlert(warning))
            if alert.acknowledged_at is None:
                alerts[warning] = replace(alert, acknowledged_at=at, acknowledged_by=key)
        elif type_name == ne.NotificationEscalated.TYPE:
            warning = str(data["warning_id"])
            alert = alerts.get(warning, AdoptedAlert(warning))
            alerts[warning] = replace(
                alert, escalated_at=alert.escalated_at or _iso_text(data["escalated_at"])
            )
    return list(outcomes.values()), list(alerts.values())


def causes_of_record(events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> set[str]:
    """The events (case or meeting events; not escalations) that the delivery record's
    deliveries were decided for, from its events ((event id, type, data))."""
    return {
        str(data["cause_event_id"])
        for _, type_name, data in events
        if type_name in (ne.NotificationSent.TYPE, ne.NotificationFailed.TYPE)
        and data.get("cause_event_type") != "escalation"
    }


def _iso_text(value: str) -> str:
    """A record's timestamp as the store keeps it (:func:`iso`)."""
    return iso(datetime.fromisoformat(value))


def _decided_at(row: DeliveryRow) -> datetime:
    """When the delivery was decided: its cause event's recorded_at (``created_at``)."""
    return datetime.fromisoformat(row.created_at)


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:160]


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Dates and times as ISO text (the context is stored as JSON and rendered later)."""

    def convert(item: Any) -> Any:
        if item is None or isinstance(item, str | int | float):  # most of a context: as it is
            return item
        if isinstance(item, datetime):
            return item.isoformat()
        if hasattr(item, "isoformat"):
            return item.isoformat()
        if isinstance(item, Mapping):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [convert(v) for v in item]
        if isinstance(item, UUID):
            return str(item)
        return item

    return {k: convert(v) for k, v in value.items()}


# A claim a stopped sender left: its message may have left before the stop.
MAY_HAVE_LEFT = "a sender stopped while sending it: it may have left"


def _as_it_stands(row: DeliveryRow, reason: str) -> str:
    """The reason a delivery is cancelled, saying so if an earlier attempt may have left."""
    if row.last_error and MAY_HAVE_LEFT in row.last_error and MAY_HAVE_LEFT not in reason:
        return f"{reason} ({MAY_HAVE_LEFT})"
    return reason
