"""`vss up` runs the local mail sink as a part of its own (ADR 0033): its own process, started
before the notifications service, which sends to it as to a real relay; what the system
decides to e-mail lands in the mail directory through it, and `vss status` lists it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from services.cli.supervisor import pid_alive
from services.shared.bus.embedded import free_port
from tests.e2e.test_readme_walkthrough import running_system

VSS = str(Path(sys.executable).parent / "vss")
OPENING = {
    "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
    "municipality": {"code": "1480", "name": "Göteborg"},
    "region": {"code": "14", "name": "Västra Götalandsregionen"},
}
COORDINATOR = {
    "user_id": "anna.k",
    "name": "Anna Karlsson",
    "organisation": {"id": "vgr-psyk", "name": "Psykiatri", "principal": "region"},
    "contact": {"email": "anna.k@example.org"},
}


def _listener(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:``port`` (Linux's /proc), None if none."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening socket's owner in /proc")
def test_vss_ups_mail_sink_is_its_own_process_and_the_systems_e_mail_lands_through_it(
    tmp_path: Path,
) -> None:
    data, port = tmp_path / "data", free_port()
    with running_system(data, port) as (_, env):
        parts = json.loads((data / "up.json").read_text())["parts"]
        names = [part["name"] for part in parts]
        assert names.index("mail-sink") < names.index("notifications")  # up before its client
        pids = {part["name"]: part["pid"] for part in parts}
        smtp_port = int(env["VSS_SMTP_PORT"])
        assert _listener(smtp_port) == pids["mail-sink"] != pids["notifications"]

        # A coordinator assigned is told by e-mail: decided by the notifications service, kept
        # by the sink.
        mint = [VSS, "token", "--user", "anna.k", "--org", "vgr-psyk", "--principal", "region"]
        token = subprocess.run(
            [*mint, "--role", "coordinator"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        today = date.today().isoformat()  # opened long ago, missed contacts would be mailed too
        opened = httpx.post(
            f"http://127.0.0.1:{port}/v1/cases", json={**OPENING, "opened_on": today}, headers=headers
        )
        assert opened.status_code == 201, opened.text
        case_id = opened.json()["case_id"]
        assigned = httpx.post(
            f"http://127.0.0.1:{port}/v1/cases/{case_id}/coordinators",
            json={"assigned_on": today, "coordinator": COORDINATOR},
            headers=headers,
        )
        assert assigned.status_code in (200, 201), assigned.text
        deadline = time.monotonic() + 30
        while not (kept := sorted((data / "mail").glob("*.eml"))):
            assert time.monotonic() < deadline, "no e-mail in the mail directory in 30 s"
            time.sleep(0.2)
        assert len(kept) == 1
        text = kept[0].read_text()
        assert "X-VSS-Envelope-To: anna.k@example.org" in text
        assert f"Subject: =?utf-8?q?Du_=C3=A4r_samordnare_i_=C3=A4rende_{case_id[:8]}?=" in text
        assert "mail sink listening" in (data / "logs" / "mail-sink.log").read_text()
        # The notifications service ran no sink of its own.
        notifications_log = (data / "logs" / "notifications.log").read_text()
        assert "notifications.mail_sink" not in notifications_log
        assert "mail sink listening" not in notifications_log

        status = subprocess.run(
            [VSS, "status", "--json"], env=env, capture_output=True, text=True, check=False
        )
        assert status.returncode == 0, status.stdout + status.stderr
        listed = {part["name"]: part for part in json.loads(status.stdout)["parts"]}
        sink = listed["mail-sink"]
        assert sink["url"] == f"smtp://127.0.0.1:{smtp_port}"
        assert sink["mail"] == str((data / "mail").resolve()) == listed["notifications"]["mail"]
        assert sink["healthy"] is True
        shown = subprocess.run([VSS, "status"], env=env, capture_output=True, text=True, check=False).stdout
        assert f"smtp://127.0.0.1:{smtp_port}  into {(data / 'mail').resolve()}" in shown
    # Ctrl-C stopped it with the rest.
    assert not pid_alive(pids["mail-sink"])
