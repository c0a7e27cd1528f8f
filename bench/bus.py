"""The bus per command: what crosses the nats-server of `vss up` while bench/system.py drives it.

Runs ``bench/system.py`` for one step (``--rate`` commands/s for ``--seconds``, the raw
references cut short) and, over ``--window`` seconds from ``--settle`` seconds into the
step, reads the embedded nats-server's monitoring endpoints (``/varz``, ``/connz``,
``/jsz``) and every part's CPU (user and system, ``/proc/<pid>/stat``). Then prints per
command (the step's rate times the window): the messages and bytes into and out of the
server, in total and per connection (each relay, lease and durable consumer by name), the
messages stored per stream, and each part's CPU in milliseconds.

Usage::

    .venv/bin/python bench/bus.py                 # about 2.5 minutes; needs a quiet machine
    .venv/bin/python bench/bus.py --rate 45 --window 30

Linux only (``/proc``). Record the figures, with ``uptime``, in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _snapshot(monitor: str, parts: dict[str, int]) -> dict[str, Any]:
    return {
        "cpu": {name: _cpu(pid) for name, pid in parts.items()},
        "varz": _get(f"{monitor}/varz"),
        "connz": _get(f"{monitor}/connz?limit=1000"),
        "jsz": _get(f"{monitor}/jsz?streams=1"),
    }


def _streams(jsz: dict[str, Any]) -> dict[str, int]:
    return {
        stream["name"]: stream["state"]["messages"]
        for account in jsz.get("account_details", [])
        for stream in account.get("stream_detail", [])
    }


def report(before: dict[str, Any], after: dict[str, Any], commands: float) -> list[str]:
    """Per command of the schedule; the case events stored per command show whether the
    system kept up with it (fewer than usual: it fell behind, and every figure is low)."""
    case_events = _streams(after["jsz"]).get("VSS_CASE", 0) - _streams(before["jsz"]).get("VSS_CASE", 0)
    stored = case_events / commands
    lines = [f"per command ({commands:.0f} commands scheduled, {stored:.2f} case events stored each):"]
    for key in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
        lines.append(f"  server {key:10s} {(after['varz'][key] - before['varz'][key]) / commands:9.1f}")
    lines.append("  CPU ms (user + system = total):")
    for name, (user_after, system_after) in after["cpu"].items():
        user = user_after - before["cpu"][name][0]
        system = system_after - before["cpu"][name][1]
        lines.append(
            f"    {name:14s} {1000 * user / commands:5.2f} + {1000 * system / commands:5.2f}"
            f" = {1000 * (user + system) / commands:5.2f}"
        )
    lines.append("  messages stored per stream:")
    stored_before = _streams(before["jsz"])
    for name, count in sorted(_streams(after["jsz"]).items()):
        lines.append(f"    {name:28s} {(count - stored_before.get(name, 0)) / commands:6.2f}")
    lines.append("  per connection (in, out messages):")
    earlier = {c["cid"]: c for c in before["connz"]["connections"]}
    rows = []
    for connection in after["connz"]["connections"]:
        previous = earlier.get(connection["cid"], {"in_msgs": 0, "out_msgs": 0})
        rows.append(
            (
                connection.get("name", ""),
                (connection["in_msgs"] - previous["in_msgs"]) / commands,
                (connection["out_msgs"] - previous["out_msgs"]) / commands,
            )
        )
    for name, sent, received in sorted(rows, key=lambda row: -(row[1] + row[2])):
        if sent + received >= 0.005:
            lines.append(f"    {name:40s} {sent:6.2f} {received:6.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=45, help="commands/s of the one step (default 45)")
    parser.add_argument("--seconds", type=float, default=60, help="the step's length (default 60)")
    parser.add_argument("--settle", type=float, default=8, help="seconds into the step before reading")
    parser.add_argument("--window", type=float, default=30, help="seconds between the two readings")
    args = parser.parse_args(argv)
    if args.settle + args.window > args.seconds:
        parser.error("--settle + --window must lie within --seconds")
    with tempfile.TemporaryDirectory(prefix="vss-bench-bus-") as tmp:
        output = Path(tmp) / "system.txt"
        command = [
            sys.executable, str(ROOT / "bench" / "system.py"), "--rates", str(args.rate),
            "--seconds", str(args.seconds), "--latency-rate", str(args.rate), "--warmup", "5",
            "--raw-saves", "100", "--raw-publishes", "1000", "--raw-mails", "10",
        ]  # fmt: skip
        env = {**os.environ, "TMPDIR": tmp}  # so that this run's `vss up` is the one found here
        with output.open("wb") as out:
            system = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while "step: " not in output.read_text() and system.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit("bench/system.py did not reach its step within 10 minutes")
                time.sleep(1)
            if system.poll() is not None:
                raise SystemExit(f"bench/system.py ended early:\n{output.read_text()[-3000:]}")
            up = json.loads(next(Path(tmp).glob("vss-bench-system-*/data/up.json")).read_text())
            parts = {part["name"]: int(part["pid"]) for part in up["parts"] if part.get("pid")}
            nats = Path(f"/proc/{parts['nats']}/cmdline").read_text().split("\0")
            monitor = f"http://127.0.0.1:{nats[nats.index('--http_port') + 1]}"
            time.sleep(args.settle)
            started = time.monotonic()
            before = _snapshot(monitor, parts)
            time.sleep(args.window)
            after = _snapshot(monitor, parts)
            commands = args.rate * (time.monotonic() - started)
        finally:
            system.wait()
        print("\n".join(report(before, after, commands)))
        print("bench/system.py:", *output.read_text().splitlines()[-60:], sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
