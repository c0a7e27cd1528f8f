"""The local mail sink as a process of its own (``python -m services.notifications.mailsink_main``,
what `vss up` runs, ADR 0033): it keeps what it is sent in the mail directory, stops cleanly on
SIGTERM or SIGINT, and ends at start with one line when its port is taken."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from services.cli.registry import smtp_answers
from services.notifications.mailsink_main import port_taken
from services.shared.bus.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "VSS_DATA_DIR": str(data_dir), "VSS_SMTP_PORT": str(port)}
    env.pop("VSS_SMTP_HOST", None)
    return subprocess.Popen(
        [sys.executable, "-m", "services.notifications.mailsink_main"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_answering(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while not smtp_answers("127.0.0.1", port):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the mail sink did not answer in 30 s"
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_sink_process_keeps_each_message_in_the_mail_directory_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    port = free_port()
    process = _start(tmp_path, port)
    try:
        _wait_answering(process, port)
        message = EmailMessage()
        message["From"] = "noreply@vss.example.se"
        message["To"] = "anna.k@example.org"
        message["Subject"] = "Du är samordnare"
        message["Message-ID"] = "<one@vss.example.se>"
        message.set_content("Hej Anna")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(message)
        kept = sorted((tmp_path / "mail").glob("*.eml"))
        assert len(kept) == 1  # on disk before the sink answered 250
        text = kept[0].read_text()
        assert "X-VSS-Envelope-To: anna.k@example.org" in text
        assert "Hej Anna" in text
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert not smtp_answers("127.0.0.1", port)
    assert not list((tmp_path / "mail").glob(".incoming-*"))  # no half-written message left


def test_the_sink_process_ends_at_start_with_one_line_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start(tmp_path, port)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.splitlines() == [f"mail sink: {port_taken(port)}"]
    assert "VSS_SMTP_PORT" in stderr


def test_smtp_answers_only_where_an_smtp_server_greets(tmp_path: Path) -> None:
    assert not smtp_answers("127.0.0.1", free_port())  # nothing listens
    with socket.socket() as silent:  # listens, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not smtp_answers("127.0.0.1", silent.getsockname()[1], timeout=0.3)
