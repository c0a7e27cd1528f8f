"""What must hold after the chaos, each check adding its figures to the run's report.

A check never stops at the first problem: it records what it found (a figure) and, if
something does not hold, a failure naming it with figures; the test prints every figure
and then fails with every failure, so one run shows everything.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any
from uuid import UUID

from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels
from tests.chaos.load import Sent
from tests.chaos.stores import rows
from tests.chaos.system import System
from tests.support.bus import StreamMessage, read_stream
from vss_contracts.subjects import CASE_STREAM, CASE_SUBJECTS

RECOVERED_WHILE_SENDING = "a sender stopped while sending it"  # the crash window's cancellation reason


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def figure(self, name: str, value: Any) -> None:
        self.figures[name] = value

    def expect(self, holds: bool, failure: str) -> None:
        if not holds:
            self.failures.append(failure)

    def render(self) -> str:
        width = max(len(name) for name in self.figures)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in self.figures.items())


def case_store_url(system: System) -> str:
    return system.store_url("VSS_CASE_STORE_URL", "case/events.sqlite")


def notifications_store_url(system: System) -> str:
    return system.store_url("VSS_NOTIFICATIONS_STORE_URL", "notifications.sqlite")


def stored_events(system: System) -> dict[UUID, list[tuple[int, str]]]:
    """Every case's events in the store, in version order: (version, event id)."""
    store = CaseEventStore(StoreConfig(case_store_url(system)))
    try:
        return {
            case_id: sorted((raw.version, str(raw.state["event_id"])) for raw in store.raw_events(case_id))
            for case_id in store.case_ids()
        }
    finally:
        store.close()


def streamed_events(system: System) -> list[StreamMessage]:
    return asyncio.run(read_stream(system.nats_url, CASE_STREAM, CASE_SUBJECTS, auth=system.operator()))


# ------------------------------------------------------------------------- store = stream
def store_equals_stream(system: System, report: Report) -> dict[UUID, list[tuple[int, str]]]:
    """Every stored event on the stream exactly once, in each case's order, nothing else."""
    verified = system.vss("verify", "--all", "--against-stream", check=False)
    report.figure("vss verify --all --against-stream", verified.stdout.strip().splitlines()[-1:])
    report.expect(verified.returncode == 0, f"vss verify --against-stream failed:\n{verified.stdout[-3000:]}")
    report.expect(
        "not on the stream yet" not in verified.stdout, f"unpublished events: {verified.stdout[-500:]}"
    )
    stored = stored_events(system)
    messages = streamed_events(system)
    stored_ids = {event_id for events in stored.values() for _, event_id in events}
    ids = Counter(m.event.id for m in messages)
    twice = {event_id: n for event_id, n in ids.items() if n > 1}
    report.figure("cases in the store", len(stored))
    report.figure("events in the store", sum(len(events) for events in stored.values()))
    report.figure("messages on VSS_CASE", len(messages))
    report.figure("events on the stream twice", len(twice))
    report.expect(
        not twice, f"{len(twice)} events on the stream more than once, e.g. {list(twice.items())[:3]}"
    )
    missing, extra = stored_ids - set(ids), set(ids) - stored_ids
    report.figure("stored events not on the stream", len(missing))
    report.figure("streamed events not in the store", len(extra))
    report.expect(not missing, f"{len(missing)} stored events not on the stream, e.g. {sorted(missing)[:3]}")
    report.expect(
        not extra, f"{len(extra)} streamed events the store does not hold, e.g. {sorted(extra)[:3]}"
    )
    by_case: dict[UUID, list[tuple[int, str]]] = defaultdict(list)
    for m in messages:
        by_case[UUID(str(m.event.subject))].append((int(m.event.caseversion or 0), m.event.id))
    disordered = [case for case, events in by_case.items() if events != stored.get(case)]
    report.figure("cases whose stream order differs from the store", len(disordered))
    report.expect(
        not disordered,
        f"{len(disordered)} cases differ (order, gap or content) between the stream and the store,"
        f" e.g. {disordered[:1]}: stream {by_case[disordered[0]][:20] if disordered else ''}",
    )
    positions = [m.position for m in messages]
    report.expect(positions == sorted(positions), "the stream's log positions are not in commit order")
    return stored


# ------------------------------------------------------------------- accepted commands kept
def accepted_commands_stored(
    log: list[Sent], stored: dict[UUID, list[tuple[int, str]]], report: Report
) -> None:
    """Every event a 2xx answer of the case API named is in the store, at its version."""
    index = {(case, version): event_id for case, events in stored.items() for version, event_id in events}
    writes = [s for s in log if s.api == "case" and s.method != "GET"]
    accepted = [s for s in writes if s.accepted]
    named = [(UUID(str(s.body["case_id"])), e) for s in accepted if s.body for e in s.body.get("events", [])]
    lost = [(case, e) for case, e in named if index.get((case, int(e["version"]))) != str(e["id"])]
    report.figure("case commands sent / accepted", f"{len(writes)} / {len(accepted)}")
    report.figure("events named by accepted commands", len(named))
    report.figure("accepted after a retry (same Idempotency-Key)", sum(1 for s in accepted if s.attempts > 1))
    report.figure("accepted events not stored", len(lost))
    report.expect(not lost, f"{len(lost)} events of accepted commands are not stored, e.g. {lost[:3]}")


# ------------------------------------------------------------------------------ 5xx answers
def no_5xx_but_while_case_api_down(
    log: list[Sent],
    down: dict[str, list[tuple[float, float]]],
    postgres_down: list[tuple[float, float]],
    report: Report,
) -> None:
    """A case API process answers no 5xx, but (if at all) while it is itself down (``down``:
    its windows, by part) or while PostgreSQL, its store, is (``postgres_down``). Each 5xx is
    counted by its cause. The meetings and query APIs may answer 503 with Retry-After (their
    documented answer while they catch up with the case stream after a restart, or while
    their database is unreachable); a client then retries; any other 5xx counts."""

    def within(at: float, windows: list[tuple[float, float]]) -> bool:
        return any(start - 1 <= at <= end + 1 for start, end in windows)

    case_5xx = [
        (at, code, f"{s.command} ({s.target})", s.target)
        for s in log
        if s.api == "case"
        for at, code in s.answers
        if code >= 500
    ]
    causes: Counter[str] = Counter()
    outside = []
    for at, code, command, target in case_5xx:
        if within(at, down.get(target, [])):
            causes[f"{target} down: {code}"] += 1
        elif within(at, postgres_down):
            causes[f"postgres down: {code}"] += 1
        else:
            causes[f"outside: {code}"] += 1
            outside.append((at, code, command))
    report.figure("case API 5xx (outside its down windows)", f"{len(case_5xx)} ({len(outside)})")
    report.figure("case API 5xx by cause: status", dict(sorted(causes.items())))
    unexpected = []
    for api in ("meetings", "query"):
        answers = [
            (at, code, s.command) for s in log if s.api == api for at, code in s.answers if code >= 500
        ]
        other = [x for x in answers if x[1] != 503]
        unexpected += other
        report.figure(f"{api} API 503 (other 5xx)", f"{len(answers) - len(other)} ({len(other)})")
    report.figure("connection errors retried", sum(s.connection_errors for s in log))
    report.expect(not outside, f"case API 5xx while it and PostgreSQL were up: {_times(outside)}")
    report.expect(not unexpected, f"meetings or query API 5xx other than 503: {_times(unexpected)}")


def _times(answers: list[tuple[float, int, str]]) -> list[str]:
    return [
        f"{time.strftime('%H:%M:%S', time.gmtime(at))} {code} {command}" for at, code, command in answers[:10]
    ]


# -------------------------------------------------------------------------- notifications
def _deliveries(system: System) -> list[dict[str, Any]]:
    return rows(
        notifications_store_url(system),
        "SELECT delivery_key, status, channel, message_id, last_error, next_attempt_at FROM deliveries",
    )


def wait_deliveries_settled(system: System, timeout: float) -> int:
    """Until no delivery is due or being sent (the sender works through its backlog after the
    load, and the delivery record it publishes is what the projector reads); how many are due."""
    deadline = time.monotonic() + timeout
    while True:
        now = datetime.now(UTC).isoformat()
        due = [
            row
            for row in _deliveries(system)
            if row["status"] == "sending" or (row["status"] == "pending" and row["next_attempt_at"] <= now)
        ]
        if not due or time.monotonic() > deadline:
            return len(due)
        time.sleep(1)


def mail_by_message_id(system: System) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (system.data_dir / "mail").glob("*.eml"):
        headers = BytesHeaderParser(policy=compat32).parsebytes(path.read_bytes())
        found[str(headers.get("Message-ID", "")).strip()] += 1
    return found


def notifications_hold(system: System, notification_crashes: int, report: Report) -> None:
    """No message sent after its cancellation; at most one duplicate per crash of the
    notifications service, with the same Message-ID; every message sent is one the record has."""
    rows = _deliveries(system)
    email = [row for row in rows if row["channel"] == "email"]
    mails = mail_by_message_id(system)
    known = {row["message_id"] for row in email}
    by_status = Counter(row["status"] for row in email)
    report.figure("e-mail deliveries by status", dict(sorted(by_status.items())))
    report.figure("messages in the mail sink", sum(mails.values()))
    strangers = [mid for mid in mails if mid not in known]
    report.expect(not strangers, f"{len(strangers)} messages in the sink no delivery has: {strangers[:3]}")
    unsent = [
        row["delivery_key"] for row in email if row["status"] == "sent" and not mails[row["message_id"]]
    ]
    report.figure("deliveries recorded sent, not in the sink", len(unsent))
    report.expect(not unsent, f"{len(unsent)} deliveries recorded sent are not in the sink: {unsent[:3]}")
    cancelled = [row for row in email if row["status"] == "cancelled"]
    in_crash = [row for row in cancelled if RECOVERED_WHILE_SENDING in (row["last_error"] or "")]
    after_cancel = [
        row["message_id"] for row in cancelled if row not in in_crash and mails[row["message_id"]]
    ]
    report.figure("cancelled (of which in a crash window)", f"{len(cancelled)} ({len(in_crash)})")
    report.figure("messages sent after their cancellation", len(after_cancel))
    report.expect(not after_cancel, f"{len(after_cancel)} cancelled messages were sent: {after_cancel[:3]}")
    duplicates = {mid: n - 1 for mid, n in mails.items() if n > 1}
    report.figure("duplicate messages (same Message-ID)", sum(duplicates.values()))
    report.figure("notifications crashes (restarts)", notification_crashes)
    report.expect(
        sum(duplicates.values()) <= notification_crashes,
        f"{sum(duplicates.values())} duplicates after {notification_crashes} crashes:"
        f" {list(duplicates.items())[:5]}",
    )
    report.expect(
        all(n == 1 for n in duplicates.values()), f"a message sent three times or more: {duplicates}"
    )


# ---------------------------------------------------------------------------- projections
def projections_equal_a_rebuild(system: System, report: Report) -> None:
    """The served read models, row by row, equal a clean rebuild from the streams."""
    location = ReadModelLocation(system.store_url("VSS_READ_MODEL_URL", "projections"))
    serving = location.current()
    before = set(location.generations())
    started = time.monotonic()
    system.vss("projections", "rebuild", "--no-switch")
    report.figure("projections rebuild (s)", round(time.monotonic() - started, 1))
    built = sorted(set(location.generations()) - before)
    assert serving is not None, "no read models serve"
    assert len(built) == 1, f"the rebuild made generations {built}"
    live, clean = ReadModels(location.connect(serving)), ReadModels(location.connect(built[0]))
    try:
        live_dump, clean_dump = live.dump(), clean.dump()
    finally:
        live.close()
        clean.close()
        location.close()
    rows = sum(len(table) for table in clean_dump.values())
    differing = {
        t: _difference(live_dump[t], clean_dump[t]) for t in clean_dump if live_dump[t] != clean_dump[t]
    }
    report.figure("read model rows (tables)", f"{rows} ({len(clean_dump)})")
    report.figure("read model tables differing from a rebuild", len(differing))
    report.expect(not differing, f"read models differ from a clean rebuild: {differing}")


def _difference(live: list[tuple[Any, ...]], clean: list[tuple[Any, ...]]) -> str:
    only_live, only_clean = set(live) - set(clean), set(clean) - set(live)
    return (
        f"{len(live)} rows live, {len(clean)} rebuilt; only live {sorted(map(str, only_live))[:2]},"
        f" only rebuilt {sorted(map(str, only_clean))[:2]}"
    )
