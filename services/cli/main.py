"""``vss``: the operator CLI (start the system, mint tokens, migrate, verify the audit trail).

Every failure ends with a non-zero exit and a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

try:  # typer ≥ 0.2x ships its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - typer with an external click
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]

from services.case.infrastructure.store import (
    CaseEventStore,
    StoreConfig,
    StoreNotMigrated,
    StoreUrlInvalid,
    migrate,
)
from services.case.settings import CaseSettings
from services.cli.supervisor import Part, http_ok, pid_alive
from services.shared.auth import TokenService
from services.shared.bus.embedded import EmbeddedNatsServer, port_is_free
from services.shared.bus.lease import current_holder
from services.shared.bus.relay import lease_bucket
from services.shared.settings import AuthSettings, BusSettings, settings_error

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Operate VSS on the embedded defaults or real servers."
)
out = Console()
err = Console(stderr=True)


class PrincipalChoice(StrEnum):
    region = "region"
    municipality = "municipality"
    other = "other"


class RoleChoice(StrEnum):
    coordinator = "coordinator"
    manager = "manager"
    analyst = "analyst"
    operator = "operator"


def _fail(message: str, code: int = 1) -> typer.Exit:
    """One line on stderr, then the exit code (1: the operation failed, 2: bad input)."""
    print(f"vss: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(code)


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id (the token's sub)")],
    org: Annotated[str, typer.Option(help="Organisation id, e.g. vgr-psykiatri-nordost")],
    principal: Annotated[PrincipalChoice, typer.Option(help="The organisation's principal")],
    role: Annotated[list[RoleChoice], typer.Option(help="Role; repeat for several")],
    org_name: Annotated[str | None, typer.Option(help="Organisation name shown in events")] = None,
    hours: Annotated[int, typer.Option(min=1, max=24 * 30, help="Lifetime in hours")] = 12,
) -> None:
    """Print a bearer token valid for the embedded defaults (or the configured key)."""
    settings = CaseSettings()
    tokens = TokenService.from_settings(AuthSettings(), settings.data_dir)
    if not tokens.algorithm.startswith("HS"):
        raise _fail(
            "minting needs an HMAC key; with a public key, tokens come from your identity provider", 2
        )
    out.print(
        tokens.mint(
            user_id=user,
            organisation_id=org,
            organisation_name=org_name,
            principal=principal.value,
            roles=[r.value for r in role],
            lifetime=timedelta(hours=hours),
        ),
        soft_wrap=True,
        highlight=False,
    )


@app.command("migrate")
def migrate_command() -> None:
    """Create the case store's tables (run once per store; safe to repeat)."""
    url = CaseSettings().store_url()
    try:
        migrate(StoreConfig(url))
    except StoreUrlInvalid as error:
        raise _fail(str(error), 2) from None
    except Exception as error:  # a store that cannot be reached
        raise _fail(f"migration failed: {error}") from None
    out.print(f"case store ready: {url.split('@')[-1]}")


@app.command()
def verify(
    case_id: Annotated[str | None, typer.Argument(help="One case; omit with --all")] = None,
    all_cases: Annotated[bool, typer.Option("--all", help="Verify every case")] = False,
) -> None:
    """Recompute the hash chain of one case, or of all; exit 1 on the first break found."""
    if (case_id is None) == (not all_cases):
        raise _fail("give a CASE_ID or --all", 2)
    try:
        only = [UUID(case_id)] if case_id is not None else None
    except ValueError:
        raise _fail(f"{case_id!r} is not a case id (a UUID)", 2) from None
    try:
        store = CaseEventStore(StoreConfig(CaseSettings().store_url()))
        store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid) as error:
        raise _fail(str(error), 2) from None
    try:
        ids = only if only is not None else store.case_ids()
        broken = 0
        for cid in ids:
            if store.head(cid) is None and not store.exists(cid):
                raise _fail(f"no case {cid}", 2)
            result = store.verify(cid)
            if result is None:
                out.print(f"ok      {cid}")
            else:
                broken += 1
                out.print(f"BROKEN  {cid} at version {result.version}: {result.reason}")
        if broken:
            raise _fail(f"{broken} of {len(ids)} case(s) fail verification")
        out.print(f"{len(ids)} case(s) verified")
    finally:
        store.close()


def _parts(settings: CaseSettings, bus: BusSettings, *, embedded_nats: bool) -> list[Part]:
    """What `vss up` starts, in start order (stopped in reverse)."""
    data = settings.data_dir.resolve()
    logs = data / "logs"
    base = f"http://{settings.case_host}:{settings.case_port}"
    parts: list[Part] = []
    if embedded_nats:
        server = EmbeddedNatsServer(data / "nats", port=bus.nats_port, monitor_port=bus.nats_monitor_port)
        parts.append(
            Part(
                "nats",
                server.command(),
                server.url,
                f"{server.monitor_url}/healthz?js-enabled-only=true",
                logs / "nats.log",
            )
        )
    parts.append(
        Part("case", [sys.executable, "-m", "services.case.main"], base, f"{base}/health", logs / "case.log")
    )
    parts.append(
        Part(
            "relay",
            [sys.executable, "-m", "services.case.relay_main"],
            bus.nats(),
            None,
            logs / "relay.log",
            ready=lambda: relay_holds_lease(bus),
        )
    )
    return parts


def relay_holds_lease(bus: BusSettings) -> bool:
    """The relay is ready once it holds the stream's lease (it then publishes)."""
    names = bus.bus_names()
    return asyncio.run(current_holder(bus.nats(), bucket=lease_bucket(names), key="leader")) is not None


@app.command()
def up() -> None:
    """Start the whole system on the embedded defaults; Ctrl-C stops it cleanly."""
    settings = CaseSettings()
    bus = BusSettings()
    # The embedded nats-server runs unless a NATS URL is given (then the same processes use that).
    embedded_nats = bus.nats_embedded
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        migrate(StoreConfig(settings.store_url()))
    except Exception as error:
        raise _fail(f"cannot prepare the case store: {error}") from None
    if embedded_nats:
        for port, what in (
            (bus.nats_port, "VSS_NATS_PORT"),
            (bus.nats_monitor_port, "VSS_NATS_MONITOR_PORT"),
        ):
            if not port_is_free(port):
                raise _fail(f"port {port} for the embedded nats-server is taken ({what} sets another)")
    (settings.data_dir / "up.json").unlink(missing_ok=True)  # a stale one from a crash
    env = {**os.environ, "VSS_DATA_DIR": str(settings.data_dir.resolve()), "VSS_NATS_URL": bus.nats()}
    parts = _parts(settings, bus, embedded_nats=embedded_nats)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Handlers for both: a shell that starts `vss up` in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for part in parts:
            part.start(env)
            if not part.wait_healthy(lambda: stopping):
                if stopping:
                    return
                hint = " (is the port free? VSS_CASE_PORT sets it)" if part.name == "case" else ""
                raise _fail(f"{part.name} did not start on {part.url}{hint}; see {part.log_file}")
        base = next(part.url for part in parts if part.name == "case")
        state = {
            "case_api": base,
            "case_docs": f"{base}/docs",
            "nats_url": bus.nats(),
            "nats_embedded": embedded_nats,
            "data_dir": str(settings.data_dir.resolve()),
            "parts": [part.describe() for part in parts],
        }
        (settings.data_dir / "up.json").write_text(json.dumps(state, indent=2))
        out.print(
            f"[bold]VSS is up[/bold]\n  case API   {base}\n  API docs   {base}/docs\n"
            f"  NATS       {bus.nats()}{' (embedded)' if embedded_nats else ''}\n"
            f"  data       {state['data_dir']}\n  logs       {settings.data_dir.resolve() / 'logs'}"
        )
        out.print(
            "  a token:   .venv/bin/vss token --user anna --org region-psykiatri"
            " --principal region --role coordinator"
        )
        out.print("Ctrl-C stops everything.")
        while not stopping:
            dead = [part for part in parts if not part.running()]
            if dead:
                code = dead[0].process.returncode if dead[0].process else None
                raise _fail(f"{dead[0].name} stopped (exit {code}); see {dead[0].log_file}")
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        for part in reversed(parts):
            part.stop()
        (settings.data_dir / "up.json").unlink(missing_ok=True)
        out.print("VSS stopped.")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """What `vss up` started, with URLs and health."""
    settings = CaseSettings()
    bus = BusSettings()
    state_file = settings.data_dir / "up.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    base = f"http://{settings.case_host}:{settings.case_port}"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            health = json.loads(response.read())
            case_healthy = response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        health, case_healthy = None, False
    pids = {part["name"]: part.get("pid") for part in state.get("parts", [])}
    nats_url = state.get("nats_url", bus.nats())
    nats_part: dict[str, Any] = {
        "name": "nats",
        "url": nats_url,
        "embedded": state.get("nats_embedded", True),
    }
    if nats_part["embedded"]:
        monitor = f"http://127.0.0.1:{bus.nats_monitor_port}"
        nats_part.update(monitor=monitor, healthy=http_ok(f"{monitor}/healthz?js-enabled-only=true"))
    else:
        nats_part["healthy"] = _tcp_ok(nats_url)
    relay_pid = pids.get("relay")
    parts: list[dict[str, Any]] = [
        nats_part,
        {"name": "case", "url": base, "docs": f"{base}/docs", "healthy": case_healthy, "health": health},
        {
            "name": "relay",
            "url": nats_url,
            "pid": relay_pid,
            "healthy": relay_pid is not None and pid_alive(int(relay_pid)) and relay_holds_lease(bus),
        },
    ]
    report: dict[str, Any] = {
        "parts": parts,
        "data_dir": str(Path(settings.data_dir).resolve()),
        "case_store": settings.store_url().split("@")[-1],
        "logs": str(Path(settings.data_dir).resolve() / "logs"),
    }
    healthy = all(part["healthy"] for part in parts)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for part in parts:
            mark = "up" if part["healthy"] else "DOWN"
            out.print(f"{part['name']:<8} {mark:<5} {part['url']}")
        out.print(f"data     {report['data_dir']}")
    if not healthy:
        raise typer.Exit(1)


def _tcp_ok(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    """The `vss` entry point: usage errors are one line too, not a panel."""
    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError:
        app(["--help"])
    except ClickException as error:
        print(f"vss: {error.format_message()}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except ValidationError as error:  # a VSS_* variable with a bad value
        print(f"vss: {settings_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        print("vss: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
