"""After the chaos: the meetings schedule and every organisation's share equal a clean replay.

Both are replayed the documented way (docs/operations.md): `vss up` stopped, the meetings
service started again on an empty store (it adopts `VSS_MEETINGS`, then replays the case
stream: the same meetings with the same ids, nothing published twice), the sharing service
on an empty store with `VSS_SHARE` and its lease bucket deleted (it decides again from the
start of the case stream and publishes every organisation's share anew). The replayed
state is compared with what the chaos run left, row by row and message by message.

The replayed stores are of the kind the live ones are: SQLite files on the embedded
topology, new PostgreSQL databases on the cluster's server (``vss_*_replay``), so a
difference can only come from the services and the streams, never from one database
answering differently from another; a replay into a new database is also what an operator
of the production topology does.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from services.cli.cluster import nats_nodes
from services.shared.bus.authorization import credentials_dir
from services.shared.bus.embedded import EmbeddedNatsServer, free_port
from services.shared.bus.relay import lease_bucket
from services.sharing.settings import SharingSettings
from tests.chaos.checks import Report
from tests.chaos.stores import create_database, rows
from tests.chaos.system import System, delete_stream_and_bucket
from tests.support.bus import read_stream
from vss_contracts.meeting_events import MEETING_STREAM, MEETING_SUBJECTS
from vss_contracts.subjects import SHARE_STREAM, SHARE_SUBJECTS


@dataclass
class Before:
    """What the chaos run left: the schedules, the meetings stream, every share."""

    schedules: dict[str, Any]
    meetings_stream: list[str]  # CloudEvent ids, in stream order
    shares: dict[str, list[tuple[str, str]]]  # organisation -> (subject, CloudEvent id), in order
    decided: set[tuple[str, ...]]  # the notifications' deliveries: who is told what, on which channel


# The stores replayed, with the database each gets on the cluster's PostgreSQL.
REPLAYED = {
    "VSS_MEETINGS_STORE_URL": ("meetings-replayed.sqlite", "vss_meetings_replay"),
    "VSS_SHARING_STORE_URL": ("sharing-replayed.sqlite", "vss_sharing_replay"),
    "VSS_NOTIFICATIONS_STORE_URL": ("notifications-replayed.sqlite", "vss_notifications_replay"),
}


def _schedules(url: str) -> dict[str, Any]:
    """Every case's schedule, as its snapshot says, but for ``revision``: that counts the
    snapshots stored (the store's optimistic concurrency token), and the meetings service
    stores one per batch of case events, so it depends on how the events arrived in batches,
    not on the history; a replay reads the stream in other batches."""
    return {
        str(row["case_id"]): {
            name: value for name, value in json.loads(row["snapshot"]).items() if name != "revision"
        }
        for row in rows(url, "SELECT case_id, snapshot FROM schedules")
    }


def _decided(url: str) -> set[tuple[str, ...]]:
    """Every delivery decided (whatever became of it: sent, cancelled, pending)."""
    found = rows(
        url,
        "SELECT delivery_key, case_id, cause_event_id, template, channel, address, message_id"
        " FROM deliveries",
    )
    return {tuple(str(value) for value in row.values()) for row in found}


def _pending_adoptions(url: str) -> int:
    return int(rows(url, "SELECT COUNT(*) AS n FROM adopted_requests")[0]["n"])


def _shares(system: System) -> dict[str, list[tuple[str, str]]]:
    messages = asyncio.run(read_stream(system.nats_url, SHARE_STREAM, SHARE_SUBJECTS, auth=system.operator()))
    shares: dict[str, list[tuple[str, str]]] = {}
    for m in messages:
        organisation = m.subject.split(".")[2]  # vss.share.<organisation>.<case>.<Event>
        shares.setdefault(organisation, []).append((m.subject, m.event.id))
    return shares


def _meetings_stream(system: System) -> list[str]:
    messages = asyncio.run(
        read_stream(system.nats_url, MEETING_STREAM, MEETING_SUBJECTS, auth=system.operator())
    )
    return [m.event.id for m in messages]


def before_replay(system: System) -> Before:
    """Read while the chaos run's system is still up and caught up."""
    return Before(
        _schedules(system.store_url("VSS_MEETINGS_STORE_URL", "meetings.sqlite")),
        _meetings_stream(system),
        _shares(system),
        _decided(system.store_url("VSS_NOTIFICATIONS_STORE_URL", "notifications.sqlite")),
    )


def _delete_share(system: System) -> None:
    """VSS_SHARE and its lease bucket deleted, with only nats-servers of our own running on
    the system's data (no sharing service may publish meanwhile): the embedded server, or
    the cluster's three nodes as `vss up --cluster` configures them."""
    bucket = lease_bucket(SharingSettings().share_names())
    config = credentials_dir(system.data_dir) / "authorization.conf"
    if system.topology.cluster:
        nodes = nats_nodes(
            system.data_dir.resolve(),
            port=int(system.env["VSS_NATS_PORT"]),
            monitor_port=int(system.env["VSS_NATS_MONITOR_PORT"]),
            route_port=int(system.env["VSS_NATS_ROUTE_PORT"]),
            authorization=config.resolve(),
        )
        for node in nodes:
            node.launch()
        try:
            deadline = time.monotonic() + 60
            while not all(node.healthy(current=True) for node in nodes):
                assert time.monotonic() < deadline, "the cluster's nodes did not come up for the replay"
                time.sleep(0.2)
            url = ",".join(node.url for node in nodes)
            asyncio.run(delete_stream_and_bucket(url, system.operator(), SHARE_STREAM, bucket))
        finally:
            for node in nodes:
                node.stop()
        return
    server = EmbeddedNatsServer(
        system.data_dir / "nats",
        port=system.nats_port,
        monitor_port=system.nats_monitor_port,
        config_file=config,
    )
    server.start()
    try:
        asyncio.run(delete_stream_and_bucket(server.url, system.operator(), SHARE_STREAM, bucket))
    finally:
        server.stop()


def replay(system: System, before: Before, report: Report, timeout: float = 600) -> None:
    """Stop, replay meetings, sharing and the notifications' decisions from empty stores,
    compare; leaves the system up."""
    stores = {}
    for setting, (file, database) in REPLAYED.items():
        if system.topology.cluster:  # created while the cluster's PostgreSQL runs
            create_database(system.postgres_url("postgres"), database)
            stores[setting] = system.postgres_url(database)
        else:
            stores[setting] = f"sqlite:///{(system.data_dir / file).resolve()}"
    system.stop()
    _delete_share(system)
    system.env.update(stores)  # `vss up --cluster` keeps a store's own postgresql:// URL
    meetings = stores["VSS_MEETINGS_STORE_URL"]
    notifications = stores["VSS_NOTIFICATIONS_STORE_URL"]
    # The replayed notifications would send every message again: only their decisions are
    # compared, so they go to an SMTP port nobody listens on (retried later, not sent), which
    # spares the machine thousands of sends while the replay runs.
    system.env["VSS_SMTP_HOST"] = "127.0.0.1"
    system.env["VSS_SMTP_PORT"] = str(free_port())
    started = time.monotonic()
    system.start()
    system.wait_caught_up(timeout)
    deadline = time.monotonic() + timeout
    expected = sum(len(share) for share in before.shares.values())
    while True:  # the sharing relay publishes the replayed outbox; the meetings service applies adoptions
        shares = _shares(system)
        published = sum(len(share) for share in shares.values())
        if (published >= expected and _pending_adoptions(meetings) == 0) or time.monotonic() > deadline:
            break
        time.sleep(1)
    report.figure("replay of meetings, sharing, notifications (s)", round(time.monotonic() - started, 1))
    schedules = _schedules(meetings)
    differing = sorted(
        case
        for case in set(schedules) | set(before.schedules)
        if schedules.get(case) != before.schedules.get(case)
    )
    report.figure(
        "meeting schedules (differing from a replay)", f"{len(before.schedules)} ({len(differing)})"
    )
    report.expect(
        not differing,
        f"{len(differing)} meeting schedules differ from a replay, e.g. {differing[:1]}:"
        f" live {before.schedules.get(differing[0]) if differing else ''}"
        f" replayed {schedules.get(differing[0]) if differing else ''}",
    )
    decided = _decided(notifications)
    report.figure(
        "deliveries decided (differing from a replay)",
        f"{len(before.decided)} ({len(decided ^ before.decided)})",
    )
    report.expect(
        decided == before.decided,
        f"the notifications' decisions differ from a replay: {len(before.decided)} live, {len(decided)}"
        f" replayed; only live {sorted(before.decided - decided)[:2]},"
        f" only replayed {sorted(decided - before.decided)[:2]}",
    )
    meetings_stream = _meetings_stream(system)
    report.figure(
        "VSS_MEETINGS messages (after the replay)", f"{len(before.meetings_stream)} ({len(meetings_stream)})"
    )
    report.expect(
        meetings_stream == before.meetings_stream,
        f"the meetings replay changed VSS_MEETINGS: {len(before.meetings_stream)} -> {len(meetings_stream)}",
    )
    report.figure(
        "organisations' share messages (replayed)", f"{expected} ({sum(len(s) for s in shares.values())})"
    )
    for organisation in sorted(set(shares) | set(before.shares)):
        live, replayed = before.shares.get(organisation, []), shares.get(organisation, [])
        only_live, only_replayed = sorted(set(live) - set(replayed)), sorted(set(replayed) - set(live))
        report.expect(
            live == replayed,
            f"{organisation}'s share differs from a replay: {len(live)} messages live,"
            f" {len(replayed)} replayed; only live {only_live[:2]}, only replayed {only_replayed[:2]}",
        )
