"""End to end, as a user does it: `vss up`, then the README's curl walk-through, verbatim.

The walk-through block is read from README.md, so the README cannot drift from what works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.cli.registry import SERVICES
from services.cli.supervisor import pid_alive
from services.shared.bus.authorization import (
    InternalRole,
    NatsAuth,
    credentials_dir,
    inbox_prefix,
    internal_seed_path,
    organisation_seed_path,
)
from services.shared.bus.embedded import free_port
from services.shared.bus.names import BusNames
from tests.support.bus import StreamMessage, read_stream
from tests.support.nats import delete_streams
from vss_contracts.subjects import CASE_STREAM, CASE_SUBJECTS, SHARE_STREAM, SHARE_SUBJECTS, share_subject

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")


@contextlib.contextmanager
def running_system(
    data_dir: Path, port: int, nats_port: int | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """`vss up` as a user starts it; stopped with Ctrl-C (SIGINT) at the end."""
    nats_port = nats_port or free_port()
    env = {
        **os.environ,
        "VSS_DATA_DIR": str(data_dir),
        "VSS_CASE_PORT": str(port),
        "VSS_QUERY_PORT": str(free_port()),
        "VSS_MEETINGS_PORT": str(free_port()),
        "VSS_NOTIFICATIONS_PORT": str(free_port()),
        "VSS_SMTP_PORT": str(free_port()),  # the local mail sink's
        # /metrics of the parts without an API (the others serve it on their API's port)
        "VSS_RELAY_METRICS_PORT": str(free_port()),
        "VSS_PROJECTOR_METRICS_PORT": str(free_port()),
        "VSS_SHARING_METRICS_PORT": str(free_port()),
        # The embedded nats-server, on ports of this test's own (never a machine's NATS).
        "VSS_NATS_PORT": str(nats_port),
        "VSS_NATS_MONITOR_PORT": str(free_port()),
        "VSS_NATS_URL": "",
    }
    for name in ("VSS_CASE_STORE_URL", "VSS_NATS_URL"):
        env.pop(name, None)
    env.update(extra_env or {})
    vss = Path(sys.executable).parent / "vss"
    process = subprocess.Popen(
        [str(vss), "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (data_dir / "up.json").exists():  # written once every part is up
                break
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            time.sleep(0.2)
        yield port, env
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=20)[0].decode()
        assert process.returncode == 0, output
        assert "VSS stopped." in output


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with running_system(tmp_path / "data", free_port()) as running:
        yield running


def test_walkthrough_from_opening_to_first_sip(system: tuple[int, dict[str, str]]) -> None:
    port, env = system
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Walk-through.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README.md lost its walk-through"
    script = "set -euo pipefail\n" + block.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = script.replace("127.0.0.1:8001", f"127.0.0.1:{env['VSS_QUERY_PORT']}")
    script = script.replace("127.0.0.1:8002", f"127.0.0.1:{env['VSS_MEETINGS_PORT']}")
    script = script.replace("127.0.0.1:8003", f"127.0.0.1:{env['VSS_NOTIFICATIONS_PORT']}")
    result = subprocess.run(
        ["bash", "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    writes = [json.loads(line) for line in lines]
    # Every write answered with the case's version; the SIP committed three events at once.
    sip = writes[-1]
    assert [e["type"] for e in sip["events"]] == [
        "se.vss.case.SipDecided.v3",
        "se.vss.case.ConsentRenewed.v1",
        "se.vss.case.PhaseChanged.v1",
    ]
    assert "phase working" in result.stdout
    assert "15 se.vss.case.PhaseChanged.v1 anna.k" in result.stdout
    assert "1 case(s) verified" in result.stdout
    assert re.search(r"signing keys: \['case-\d{8}-[0-9a-f]{8}'\]", result.stdout), result.stdout
    # The walk-through ends in the query API: the overview, the journal and the access log.
    assert "overview: phase working SIP 1" in result.stdout
    assert "journal: 15 events, chain verifies: True" in result.stdout
    access = [line.split()[2:] for line in result.stdout.splitlines() if line.startswith("access:")]
    assert access == [
        ["anna.k", "vgr-psykiatri-nordost", "case", "granted"],  # step 9, through the case API
        ["anna.k", "vgr-psykiatri-nordost", "history", "granted"],
        ["omar.s", "goteborg-socialtjanst", "overview", "granted"],
        ["omar.s", "goteborg-socialtjanst", "journal", "granted"],
    ]
    # The meetings service: the mapping summary's proposed resource group meeting, moved by the SIP
    # to its follow-up date (or the next working day), confirmed in the client's home, with its
    # calendar entry (place, agenda) and the coordinator's feed.
    follow_up = re.search(r"next follow-up (\S+)", result.stdout)
    meeting = re.search(
        r"meeting: resource_group (\S+) scheduled sequence 2 proposed True invited (.*)", result.stdout
    )
    assert follow_up, result.stdout
    assert meeting, result.stdout
    starts = datetime.fromisoformat(meeting.group(1))
    assert starts.date() >= date.fromisoformat(follow_up.group(1))
    assert starts.weekday() < 5
    assert (starts.hour, starts.minute) == (10, 0)
    assert meeting.group(2) == "['Tolvan Tolvansson', 'Anna Karlsson', 'Omar Said']"
    ics = next(line for line in result.stdout.splitlines() if line.startswith("ics:"))
    assert ics.startswith("ics: REQUEST Resursgruppsmöte ")
    assert "confirmed: Hemma hos brukaren sequence 3 agenda: Utvärdering sedan förra mötet" in result.stdout
    assert "@vss.se SEQUENCE 3 " in ics
    assert str(starts) in ics
    assert "mailto:anna.k@example.org" in ics
    assert "events in her feed: 1" in result.stdout
    # The notifications service: the files the local mail sink wrote. The coordinators were asked to
    # confirm the proposed meeting; once confirmed, the invitation reached the whole group; the
    # delivery record lists each message as sent.
    mails = [
        line.removeprefix("mail: ").split(" | ")
        for line in result.stdout.splitlines()
        if line.startswith("mail: ")
    ]
    group = {"tolvan@example.org", "anna.k@example.org", "omar.s@example.org"}
    invitations = {m[0]: m[2] for m in mails if m[1].startswith("Kallelse: Resursgruppsmöte")}
    assert invitations == dict.fromkeys(group, "ics REQUEST SEQUENCE 3")
    proposals = [m for m in mails if m[1].startswith("Bekräfta tid och plats: Resursgruppsmöte")]
    assert sorted(m[0] for m in proposals) == ["anna.k@example.org", "omar.s@example.org"]
    assert [m for m in mails if m[1].startswith("Ändrad tid")] == []  # nobody was told of a proposal's moves
    assert sorted(m[0] for m in mails if m[1].startswith("En ny SIP")) == sorted(group)
    notices = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("notice: ")]
    assert len(notices) == len(mails) == 10
    assert {n[-2:] == ["email", "sent"] for n in notices} == {True}
    # The client's own view (step 13): her case, the whole SIP, her meeting, who read her data;
    # her confirmation of the SIP is version 16, recorded in her name.
    case_id = re.search(r"^case (\S+)$", result.stdout, re.M)
    assert case_id, result.stdout
    assert f"my cases: [('{case_id.group(1)}', 'working')]" in result.stdout
    assert "my SIP: 1 overall responsibility: Socialtjänsten Göteborg" in result.stdout
    assert "  action: Ansöka om bostad med boendestöd | Omar Said | " in result.stdout
    assert "confirmed: ['se.vss.case.SipConfirmedByClient.v1'] version 16" in result.stdout
    assert "my meeting: resource_group " in result.stdout
    readers = re.search(r"who read my data: (.*)", result.stdout)
    assert readers, result.stdout
    assert "('191212121212', '(me)')" in readers.group(1)
    assert "('omar.s', 'goteborg-socialtjanst')" in readers.group(1)
    # The municipality's own subscriber (examples/subscriber/, its organisation's NATS key): the
    # case's 16 events verified, then one SharingEnded after the client withdrew the consent for
    # it (the coordinator's unassignment, version 17, still shared; the withdrawal not).
    assert f"share: 16 events of case {case_id.group(1)} verified: True" in result.stdout
    after = [line for line in result.stdout.splitlines() if line.startswith("share: se.vss.")]
    assert after == [
        "share: se.vss.case.CoordinatorUnassigned.v2 version 17 verified: True",
        "share: se.vss.sharing.SharingEnded.v1 consent_withdrawn_for_organisation after version 17",
    ]
    assert f"copy: {case_id.group(1)} verifies to version 17 sharing ended: True" in result.stdout
    # Every part serves /metrics: each durable has applied its stream (lag 0, caught up), and
    # each relay's position is what its stream holds.
    served = {
        "case": str(port),
        "query": env["VSS_QUERY_PORT"],
        "meetings": env["VSS_MEETINGS_PORT"],
        "notifications": env["VSS_NOTIFICATIONS_PORT"],
        "relay": env["VSS_RELAY_METRICS_PORT"],
        "projector": env["VSS_PROJECTOR_METRICS_PORT"],
        "sharing": env["VSS_SHARING_METRICS_PORT"],
    }
    expected_durables = {e.name: {durable for _, durable in e.consumers} for e in SERVICES if e.consumers}

    def caught_up() -> dict[str, dict[str, float]]:
        lags: dict[str, dict[str, float]] = {}
        for part, metrics_port in served.items():
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "vss_consumer_lag":
                        lags.setdefault(part, {})[sample.labels["consumer"]] = sample.value
        return lags

    deadline = time.monotonic() + 20
    lags = caught_up()
    while time.monotonic() < deadline and any(v for d in lags.values() for v in d.values()):
        time.sleep(0.5)
        lags = caught_up()
    assert {part: set(d) for part, d in lags.items()} == expected_durables
    assert {v for d in lags.values() for v in d.values()} == {0.0}
    relay_text = httpx.get(f"http://127.0.0.1:{served['relay']}/metrics", timeout=5).text
    positions = [
        sample.value
        for family in text_string_to_metric_families(relay_text)
        for sample in family.samples
        if sample.name == "vss_relay_position"
    ]
    assert len(positions) == 1
    assert positions[0] >= writes[-1]["position"]  # at least the walk-through's last write


@pytest.mark.slow  # about 40 s: two whole starts of `vss up` (make test-slow)
def test_a_second_start_keeps_all_history_and_status_reports_the_parts(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    vss = str(Path(sys.executable).parent / "vss")
    nats_port = free_port()
    with running_system(data, port, nats_port) as (_, env):
        mint = [vss, "token", "--user", "anna.k", "--org", "vgr-psyk", "--principal", "region"]
        token = subprocess.run(
            [*mint, "--role", "coordinator"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
            "municipality": {"code": "1480", "name": "Göteborg"},
            "region": {"code": "14", "name": "Västra Götalandsregionen"},
            "opened_on": "2026-01-05",
        }
        created = httpx.post(f"http://127.0.0.1:{port}/v1/cases", json=body, headers=headers)
        assert created.status_code == 201, created.text
        # The relay publishes it to the case stream within a second.
        case_id = created.json()["case_id"]
        started = time.monotonic()
        messages: list[StreamMessage] = []
        operator = NatsAuth(seed_file=internal_seed_path(credentials_dir(data), InternalRole.OPERATOR))
        nats_url = f"nats://127.0.0.1:{nats_port}"
        while time.monotonic() - started < 1.0 and not messages:
            messages = asyncio.run(read_stream(nats_url, CASE_STREAM, CASE_SUBJECTS, auth=operator))
            time.sleep(0.02)
        assert [m.event.subject for m in messages] == [case_id]
        _embedded_server_authorizes_like_production(data, nats_url)
        # A coordinator of vgr-psyk: the sharing service gives that organisation the case's history.
        coordinator = {
            "user_id": "anna.k",
            "name": "Anna Karlsson",
            "organisation": {"id": "vgr-psyk", "name": "Psykiatri", "principal": "region"},
            "contact": {"email": "anna.k@example.org"},
        }
        assigned = httpx.post(
            f"http://127.0.0.1:{port}/v1/cases/{case_id}/coordinators",
            json={"assigned_on": "2026-01-05", "coordinator": coordinator},
            headers=headers,
        )
        assert assigned.status_code in (200, 201), assigned.text
        deadline = time.monotonic() + 10
        shared: list[StreamMessage] = []
        while time.monotonic() < deadline and len(shared) < 2:
            shared = asyncio.run(read_stream(nats_url, SHARE_STREAM, SHARE_SUBJECTS, auth=operator))
            time.sleep(0.05)
        assert [(m.subject, m.event.caseversion) for m in shared] == [
            (share_subject("vgr-psyk", case_id, "CaseOpened"), 1),
            (share_subject("vgr-psyk", case_id, "CoordinatorAssigned"), 2),
        ]

        status = subprocess.run(
            [vss, "status", "--json"], env=env, capture_output=True, text=True, check=False
        )
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        parts = {part["name"]: part for part in report["parts"]}
        assert set(parts) == {
            "nats", "case", "relay", "projector", "query", "meetings", "mail-sink", "notifications",
            "sharing",
        }  # fmt: skip
        assert parts["sharing"]["stream"] == SHARE_STREAM
        assert parts["meetings"]["url"] == f"http://127.0.0.1:{env['VSS_MEETINGS_PORT']}"
        assert parts["notifications"]["url"] == f"http://127.0.0.1:{env['VSS_NOTIFICATIONS_PORT']}"
        assert parts["notifications"]["mail"] == str((data / "mail").resolve())
        assert parts["mail-sink"]["url"] == f"smtp://127.0.0.1:{env['VSS_SMTP_PORT']}"
        assert parts["query"]["url"] == f"http://127.0.0.1:{env['VSS_QUERY_PORT']}"
        assert parts["case"]["url"] == f"http://127.0.0.1:{port}"
        assert parts["nats"]["url"] == f"nats://127.0.0.1:{nats_port}"
        assert all(part["healthy"] for part in parts.values())
        assert report["data_dir"] == str(data.resolve())
        pids = [part["pid"] for part in json.loads((data / "up.json").read_text())["parts"]]
    # Ctrl-C stopped every process it started.
    assert not any(pid_alive(pid) for pid in pids)
    with running_system(data, port, nats_port) as (_, env):
        again = httpx.get(f"http://127.0.0.1:{port}{created.headers['location']}", headers=headers)
        assert again.status_code == 200
        assert again.json()["version"] == 2
        history = asyncio.run(read_stream(nats_url, CASE_STREAM, CASE_SUBJECTS, auth=operator))
        assert [m.event.subject for m in history] == [case_id, case_id]  # kept, and not published twice
        time.sleep(0.5)  # the sharing service, restarted, shares nothing twice either
        shared = asyncio.run(read_stream(nats_url, SHARE_STREAM, SHARE_SUBJECTS, auth=operator))
        assert len(shared) == 2
    stopped = subprocess.run([vss, "status", "--json"], env=env, capture_output=True, text=True, check=False)
    assert stopped.returncode == 1
    assert not any(part["healthy"] for part in json.loads(stopped.stdout)["parts"])


def _embedded_server_authorizes_like_production(data: Path, nats_url: str) -> None:
    """`vss up`'s server runs the generated authorization with the demo organisations."""
    auth = credentials_dir(data)
    assert "authorization" in (auth / "authorization.conf").read_text()
    seeds = [organisation_seed_path(auth, org) for org in ("vgr-psykiatri-nordost", "goteborg-socialtjanst")]
    seeds += [internal_seed_path(auth, role) for role in InternalRole]
    assert {oct(seed.stat().st_mode & 0o777) for seed in seeds} == {"0o600"}

    async def anonymous() -> None:
        await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(anonymous())
    region = NatsAuth(seed_file=seeds[0], inbox_prefix=inbox_prefix("vgr-psykiatri-nordost"))
    # An organisation reads no case stream: the read is refused (no consumer, so nothing comes back).
    with pytest.raises(Exception):  # noqa: B017, PT011 - nats-py times out the refused request
        asyncio.run(read_stream(nats_url, CASE_STREAM, CASE_SUBJECTS, auth=region))


def test_a_nats_url_switches_the_same_processes_to_an_external_server(
    tmp_path: Path, nats_url: str, bus_names: BusNames
) -> None:
    data, port = tmp_path / "data", free_port()
    external = {
        "VSS_NATS_URL": nats_url,
        "VSS_BUS_STREAM": bus_names.stream,
        "VSS_BUS_SUBJECT_PREFIX": bus_names.subject_prefix,
        "VSS_BUS_DEAD_LETTER_STREAM": bus_names.dead_letter_stream,
        "VSS_BUS_DEAD_LETTER_PREFIX": bus_names.dead_letter_prefix,
        "VSS_ACCESS_STREAM": f"{bus_names.stream}_ACCESS",
        "VSS_ACCESS_SUBJECT_PREFIX": f"{bus_names.subject_prefix}.access",
        # The meetings and notifications streams beside it, under the same test-only prefix.
        "VSS_MEETINGS_STREAM_PREFIX": f"{bus_names.stream}_",
        "VSS_NOTIFICATIONS_STREAM_PREFIX": f"{bus_names.stream}_",
        "VSS_SHARE_STREAM_PREFIX": f"{bus_names.stream}_",
    }
    vss = str(Path(sys.executable).parent / "vss")
    with contextlib.ExitStack() as cleanup:
        prefix = external["VSS_MEETINGS_STREAM_PREFIX"]
        streams = [
            external["VSS_ACCESS_STREAM"],
            f"{prefix}VSS_MEETINGS",
            f"{prefix}VSS_NOTIFICATIONS",
            f"{prefix.upper()}VSS_SHARE",
            f"KV_{prefix.upper()}VSS_SHARE_RELAY",
        ]
        cleanup.callback(lambda: asyncio.run(delete_streams(nats_url, streams)))
        _external_run(data, port, external, vss, nats_url, bus_names)


def _external_run(
    data: Path, port: int, external: dict[str, str], vss: str, nats_url: str, bus_names: BusNames
) -> None:
    with running_system(data, port, extra_env=external) as (_, env):
        started = json.loads((data / "up.json").read_text())
        assert started["nats_embedded"] is False
        # No nats-server of its own:
        started_parts = [part["name"] for part in started["parts"]]
        assert started_parts == [
            "case",
            "relay",
            "projector",
            "query",
            "meetings",
            "mail-sink",
            "notifications",
            "sharing",
        ]
        mint = [vss, "token", "--user", "anna.k", "--org", "vgr-psyk", "--principal", "region"]
        token = subprocess.run(
            [*mint, "--role", "coordinator"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        body = {
            "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
            "municipality": {"code": "1480", "name": "Göteborg"},
            "region": {"code": "14", "name": "Västra Götalandsregionen"},
            "opened_on": "2026-01-05",
        }
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/cases", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 5
        messages: list[StreamMessage] = []
        while time.monotonic() < deadline and not messages:
            messages = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
            time.sleep(0.05)
        assert [m.event.subject for m in messages] == [created.json()["case_id"]]
        report = json.loads(
            subprocess.run(
                [vss, "status", "--json"], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        nats_part = next(part for part in report["parts"] if part["name"] == "nats")
        assert nats_part == {"name": "nats", "url": nats_url, "embedded": False, "healthy": True}
