"""What each organisation may see, computed the query API's way: the oracle of the sharing tests.

Each case's events are folded into the query API's own case view
(``services.projections.domain.case_view``), and the organisations that may see the case after
each event are those the query API would let read it that day: its grants
(``services.projections.domain.access.grants``) under the shared rule
(``services.shared.access.may_see``), on the event's date in Europe/Stockholm. From that, per
organisation: every event while covered (history first), one SharingEnded when it stops, what it
missed when covered again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from services.projections.domain import access as query_access
from services.projections.domain import case_view
from services.projections.infrastructure.decoding import decode
from services.shared.access import may_see
from tests.support.bus import StreamMessage

STOCKHOLM = ZoneInfo("Europe/Stockholm")
ENDED = "SharingEnded"


@dataclass
class Expected:
    # organisation -> case id -> [event id, or "SharingEnded" ] in order
    per_org: dict[str, dict[str, list[str]]] = field(default_factory=lambda: defaultdict(dict))
    bodies: dict[str, bytes] = field(default_factory=dict)  # event id -> its body on the case stream
    paths: Counter[str] = field(default_factory=Counter)  # which paths occurred (history, ended, …)

    def messages(self, organisation: str) -> int:
        return sum(len(items) for items in self.per_org[organisation].values())

    @property
    def total(self) -> int:
        return sum(self.messages(org) for org in self.per_org)


def expected_shares(case_stream: list[StreamMessage]) -> Expected:
    out = Expected()
    by_case: dict[str, list[StreamMessage]] = defaultdict(list)
    for message in case_stream:
        by_case[message.event.subject].append(message)
        out.bodies[message.event.id] = message.body
    for case_id, messages in by_case.items():
        view: dict[str, object] | None = None
        ids: list[str] = []
        received: dict[str, int] = {}
        sharing: set[str] = set()
        for message in messages:
            record = decode(message.body, message.sequence)
            ids.append(record.event_id)
            if view is None:
                view, _ = case_view.start(record)
            else:
                case_view.apply(view, record)
            day = datetime.fromisoformat(record.time).astimezone(STOCKHOLM).date().isoformat()
            case_grants = query_access.grants(view)
            covered = {org for org, _ in case_grants if may_see(org, case_grants, day)}
            for org in sorted(covered):
                first = received.get(org, 0)
                items = out.per_org[org].setdefault(case_id, [])
                if first < len(ids) - 1:
                    out.paths[
                        "missed events sent on renewal" if org in received else "history on becoming covered"
                    ] += 1
                items.extend(ids[first:])
                received[org] = len(ids)
                sharing.add(org)
            for org in sorted(sharing - covered):
                out.per_org[org][case_id].append(ENDED)
                out.paths[f"ended after {record.name}"] += 1
                sharing.discard(org)
            if record.name in ("ConsentWithdrawn", "ConsentRenewed", "ConsentGiven"):
                kind = record.name
                if record.name == "ConsentWithdrawn":
                    kind += " entirely" if record.data.get("entire", True) else " for an organisation"
                out.paths[kind] += 1
    return out
