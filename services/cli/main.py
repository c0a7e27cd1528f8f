"""``vss``: the operator CLI (start the system, mint tokens, migrate, verify the audit trail).

Every failure ends with a non-zero exit and a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import Progress as ProgressBar

try:  # typer ≥ 0.2x ships its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - typer with an external click
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]

from services.case.application.ports import CaseAlreadyExists
from services.case.domain.case import CaseState
from services.case.domain.commands import CasePolicy
from services.case.domain.events import ChainBreak
from services.case.generator import GeneratorSettings, InvalidGeneratorSettings, generation_store
from services.case.generator import generate as generate_cases
from services.case.infrastructure.signing import SigningKeyMissing
from services.case.infrastructure.store import (
    CaseEventStore,
    StoreConfig,
    StoreNotMigrated,
    StoreUrlInvalid,
)
from services.case.settings import CaseSettings
from services.cli.cluster import CLUSTER_NAME, ClusterSettings
from services.cli.cluster import nats_nodes as cluster_nodes
from services.cli.cluster import ports as cluster_ports
from services.cli.postgres import (
    DATABASES,
    EmbeddedPostgres,
    PostgresUnavailable,
    create_databases,
    without_password,
)
from services.cli.postgres import answers as postgres_answers
from services.cli.postgres import binaries as postgres_binaries
from services.cli.registry import SERVICES, MailSinkPart, consumer_lags, mail_sink, smtp_answers
from services.cli.supervisor import Part, http_ok, pid_alive
from services.notifications.settings import LinkKeyNotRotatable, NotificationsSettings
from services.projections.infrastructure.database import NoReadModels, ReadModelLocation, ReadModelUrlInvalid
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.rebuild import HistoryIncomplete, Progress, rebuild
from services.projections.settings import ProjectionsSettings
from services.shared.access import record_access
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenClaims, TokenKeyInvalid, TokenService
from services.shared.bus.authorization import (
    InternalRole,
    NatsCredentials,
    credentials_dir,
    inbox_prefix,
    internal_seed_path,
    write_nats_config,
)
from services.shared.bus.embedded import EmbeddedNatsServer, port_is_free
from services.shared.bus.names import BusNames
from services.shared.bus.streams import server_urls
from services.shared.files import create_private, write_private
from services.shared.organisations import (
    Organisations,
    OrganisationsFileInvalid,
    demo_organisations_document,
    load_organisations,
)
from services.shared.settings import (
    AccessLogSettings,
    AuthSettings,
    BusSettings,
    OrganisationsSettings,
    settings_error,
)
from services.sharing.settings import SharingSettings
from vss_contracts.signing import InvalidKeySet, PublicKeys

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
    user: Annotated[str | None, typer.Option(help="User id (the token's sub)")] = None,
    org: Annotated[str | None, typer.Option(help="Organisation id, e.g. vgr-psykiatri-nordost")] = None,
    principal: Annotated[PrincipalChoice | None, typer.Option(help="The organisation's principal")] = None,
    role: Annotated[list[RoleChoice] | None, typer.Option(help="Role; repeat for several")] = None,
    client: Annotated[
        str | None,
        typer.Option(
            help="A client's token instead (as after an e-ID sign-in): their personal identity number,"
            " YYYYMMDD-NNNC; no --user, --org, --principal or --role"
        ),
    ] = None,
    org_name: Annotated[str | None, typer.Option(help="Organisation name shown in events")] = None,
    hours: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Lifetime in hours, at most VSS_AUTH_MAX_TOKEN_LIFETIME_HOURS [default: that limit]",
        ),
    ] = None,
) -> None:
    """Print a bearer token valid for the embedded defaults (or the configured key): a staff
    member's (--user, --org, --principal, --role) or a client's (--client)."""
    staff = {"--user": user, "--org": org, "--principal": principal, "--role": role or None}
    if client is not None and any(value is not None for value in staff.values()):
        given = ", ".join(name for name, value in staff.items() if value is not None)
        raise _fail(f"--client takes none of {given}: a client's token names no organisation or role", 2)
    if client is None and any(value is None for value in staff.values()):
        missing = ", ".join(name for name, value in staff.items() if value is None)
        raise _fail(f"missing {missing} (or --client for a client's token)", 2)
    settings = CaseSettings()
    auth = AuthSettings()
    try:
        tokens = TokenService.from_settings(auth, settings.data_dir)
    except TokenKeyInvalid as error:
        raise _fail(str(error), 2) from None
    if tokens.key is None or not tokens.algorithm.startswith("HS"):
        raise _fail(
            "minting needs an HMAC key; with a public key, tokens come from your identity provider", 2
        )
    if hours is not None and hours > auth.max_token_lifetime_hours:
        raise _fail(
            f"--hours {hours:g} is over the accepted lifetime ({auth.max_token_lifetime_hours:g} h,"
            " VSS_AUTH_MAX_TOKEN_LIFETIME_HOURS)",
            2,
        )
    lifetime = None if hours is None else timedelta(hours=hours)
    try:
        if client is not None:
            minted = tokens.mint_client(client, lifetime=lifetime)
        else:
            assert user is not None
            assert org is not None
            assert principal is not None
            assert role
            minted = tokens.mint(
                user_id=user,
                organisation_id=org,
                organisation_name=org_name,
                principal=principal.value,
                roles=[r.value for r in role],
                lifetime=lifetime,
            )
    except ValueError as error:
        raise _fail(str(error), 2) from None
    out.print(
        minted,
        soft_wrap=True,
        highlight=False,
    )


@app.command("migrate")
def migrate_command() -> None:
    """Create the case, meetings, notifications and sharing stores' tables (safe to repeat), and
    sign the head of every case stored before commits were signed (a case whose hash chain does
    not verify is left unsigned and named: exit 1)."""
    settings = CaseSettings()
    urls = {entry.name: entry.store.url() for entry in SERVICES if entry.store is not None}
    try:
        signer = settings.commit_signer()
    except SigningKeyMissing as error:
        raise _fail(str(error), 2) from None
    reports = {}
    try:
        for entry in SERVICES:
            if entry.store is not None:
                reports[entry.name] = entry.store.migrate(urls[entry.name])
    except StoreUrlInvalid as error:
        raise _fail(str(error), 2) from None
    except Exception as error:  # a store that cannot be reached
        raise _fail(f"migration failed: {error}") from None
    not_sealed: list[ChainBreak] = []
    for name, url in urls.items():
        out.print(f"{name} store ready: {url.split('@')[-1]}")
        report = reports[name]
        if report is not None:
            if report.sealed:
                out.print(f"{name} heads signed with key {signer.key_id}: {report.sealed}", highlight=False)
            not_sealed += report.not_sealed
    for broken in not_sealed:
        out.print(
            f"NOT SIGNED  {broken.case_id} at version {broken.version}: {broken.reason}",
            highlight=False,
            soft_wrap=True,
        )
    if not_sealed:
        raise _fail(f"{len(not_sealed)} case(s) do not verify and were left unsigned")


@app.command()
def verify(
    case_id: Annotated[str | None, typer.Argument(help="One case; omit with --all")] = None,
    all_cases: Annotated[bool, typer.Option("--all", help="Verify every case")] = False,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="The public keys (a JWKS, as `vss keys export` writes) [default: the key directory's]",
        ),
    ] = None,
    against_stream: Annotated[
        bool,
        typer.Option(
            "--against-stream", help="Also compare the store with the case stream (VSS_CASE): the same events"
        ),
    ] = False,
) -> None:
    """Recompute the hash chain of one case, or of all, and check its signatures (every commit
    signature, and the head's, which must be there); exit 1 if any case fails. With
    --against-stream, a case fails too where the stream holds an event the store lacks or
    holds differently (events not published yet are only counted)."""
    if (case_id is None) == (not all_cases):
        raise _fail("give a CASE_ID or --all", 2)
    try:
        only = [UUID(case_id)] if case_id is not None else None
    except ValueError:
        raise _fail(f"{case_id!r} is not a case id (a UUID)", 2) from None
    settings = CaseSettings()
    try:
        keys = PublicKeys.from_file(keys_file) if keys_file else settings.keyring().public_keys()
    except (InvalidKeySet, SigningKeyMissing) as error:
        raise _fail(str(error), 2) from None
    if not keys:
        raise _fail(f"no public keys: none in {settings.keyring().directory}; give --keys FILE", 2)
    try:
        store = CaseEventStore(StoreConfig(settings.store_url()))
        store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid) as error:
        raise _fail(str(error), 2) from None
    try:
        ids = only if only is not None else store.case_ids()
        for cid in ids if not against_stream else ():
            if store.head(cid) is None and not store.exists(cid):
                raise _fail(f"no case {cid}", 2)
        streamed: dict[UUID, dict[int, tuple[str, str]]] = {}
        if against_stream:
            _use_operator_credentials(BusSettings(), settings.data_dir)
            bus = BusSettings()
            try:
                streamed = asyncio.run(_streamed_events(bus.nats(), bus.bus_names(), only))
            except Exception as error:
                raise _fail(f"cannot read the case stream: {type(error).__name__}: {error}") from None
            if only is None:
                ids = sorted(set(ids) | set(streamed))
            elif not streamed and store.head(only[0]) is None and not store.exists(only[0]):
                raise _fail(f"no case {only[0]}", 2)
        broken = unpublished = 0
        for cid in ids:
            result = store.verify(cid, keys) if store.exists(cid) else None
            found = (result.version, result.reason) if result is not None else None
            if against_stream and found is None:
                mismatch, pending = _compare_with_stream(store, cid, streamed.get(cid, {}))
                unpublished += pending
                found = mismatch
            if found is None:
                out.print(f"ok      {cid}")
            else:
                broken += 1
                out.print(f"BROKEN  {cid} at version {found[0]}: {found[1]}", highlight=False, soft_wrap=True)
        if unpublished:
            out.print(f"{unpublished} stored event(s) not on the stream yet (the relay publishes them)")
        if broken:
            raise _fail(f"{broken} of {len(ids)} case(s) fail verification")
        out.print(f"{len(ids)} case(s) verified")
    finally:
        store.close()


def _compare_with_stream(
    store: CaseEventStore, case_id: UUID, streamed: dict[int, tuple[str, str]]
) -> tuple[tuple[int, str] | None, int]:
    """The first version where the stream and the store disagree (or None), and how many
    stored events the stream does not hold yet."""
    stored = {
        raw.version: (str(raw.state["event_id"]), str(raw.state["hash"])) for raw in store.raw_events(case_id)
    }
    for version in sorted(streamed):
        if version not in stored:
            return (
                version,
                f"the stream holds version {version} (event {streamed[version][0]}), the store does not",
            ), 0
        if stored[version] != streamed[version]:
            return (version, f"version {version} differs from the stream's (event id or hash)"), 0
    return None, len(set(stored) - set(streamed))


async def _streamed_events(
    url: str, names: BusNames, only: list[UUID] | None
) -> dict[UUID, dict[int, tuple[str, str]]]:
    """Every case event on the stream (or one case's): case -> version -> (event id, hash)."""
    import nats  # noqa: PLC0415 - only this command needs a plain connection
    from nats.errors import TimeoutError as NatsTimeoutError  # noqa: PLC0415

    from services.shared.bus.streams import read_from_start  # noqa: PLC0415

    subject = names.subjects if only is None else f"{names.subject_prefix}.{only[0]}.>"
    found: dict[UUID, dict[int, tuple[str, str]]] = {}
    nc = await nats.connect(
        server_urls(url), connect_timeout=2, max_reconnect_attempts=0, **BusSettings().nats_auth().options()
    )
    try:
        js = nc.jetstream()
        await js.stream_info(names.stream)  # NotFoundError: no stream
        sub = await read_from_start(
            js, names.stream, subject, description="vss verify --against-stream (ephemeral)"
        )
        while True:
            try:
                messages = await sub.fetch(1000, timeout=1.0)
            except NatsTimeoutError:
                if (await sub.consumer_info()).num_pending == 0:
                    break
                continue
            for msg in messages:
                body = json.loads(msg.data)
                versions = found.setdefault(UUID(body["subject"]), {})
                versions[int(body["caseversion"])] = (str(body["id"]), str(body["eventhash"]))
            if messages and messages[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return found


keys_app = typer.Typer(no_args_is_help=True, help="The keys that sign the case journal's commits.")
app.add_typer(keys_app, name="keys")


@keys_app.command("export")
def keys_export(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file [default: stdout]")
    ] = None,
) -> None:
    """Write the public keys (a JWKS with every key that ever signed, by id): what an
    organisation needs, with vss_contracts, to verify its copy of the events."""
    try:
        keys = CaseSettings().keyring().public_keys()
    except (InvalidKeySet, SigningKeyMissing) as error:
        raise _fail(str(error), 2) from None
    if not keys:
        raise _fail("no signing keys yet: `vss migrate` or the case service creates the first", 2)
    text = json.dumps(keys.to_jwks(), indent=2) + "\n"
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"{len(keys)} public key(s) written to {out_file}", highlight=False)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key the current one. Events signed before keep verifying (the old
    public key stays in the set); the old private key is removed. Restart the case service
    (and `vss generate` runs) to sign with the new key."""
    try:
        signer = CaseSettings().keyring().rotate()
    except SigningKeyMissing as error:
        raise _fail(str(error), 2) from None
    out.print(f"new signing key {signer.key_id}; restart the case service to sign with it", highlight=False)


@app.command("export")
def export_case(
    case_id: Annotated[str, typer.Argument(help="The case to export")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (refuses to overwrite) [default: stdout]")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Who exports, as recorded in the access log [default: the OS user]")
    ] = None,
    org: Annotated[
        str, typer.Option(help="The operator's organisation, as recorded in the access log")
    ] = "vss-operations",
) -> None:
    """Export one case as a JSON document: every event as its public CloudEvent (each with
    its hash, and each commit's last event with its signature, so the receiver can verify
    it with vss_contracts and the public keys alone), the verification here (the chain, and
    the signatures when the key directory has public keys), the head and the state now.
    Exit 1 if the case does not verify
    (the document is still written, saying so). The export is a read of the whole case:
    it is recorded in the access log (read ``export``) before the document is written."""
    try:
        cid = UUID(case_id)
    except ValueError:
        raise _fail(f"{case_id!r} is not a case id (a UUID)", 2) from None
    if out_file is not None and out_file.exists():
        raise _fail(f"{out_file} exists already: choose another file", 2)
    try:
        store = CaseEventStore(StoreConfig(CaseSettings().store_url()))
        store.check_migrated()
    except (StoreNotMigrated, StoreUrlInvalid) as error:
        raise _fail(str(error), 2) from None
    try:
        head = store.head(cid)
        if head is None and not store.exists(cid):
            raise _fail(f"no case {cid}", 2)
        events: list[dict[str, Any]] = []
        after = 0
        while page := store.case_recorder.case_notifications(cid, after, 500):
            events += [store.cloud_event(n).model_dump(mode="json", by_alias=True) for n in page]
            after = page[-1].originator_version
        try:  # with the key directory's public keys, the signatures too (none there: the chain)
            keys: PublicKeys | None = CaseSettings().keyring().public_keys() or None
        except (InvalidKeySet, SigningKeyMissing):
            keys = None
        broken = store.verify(cid, keys)
        state = TypeAdapter(CaseState).dump_python(store.load(cid).state, mode="json")
    finally:
        store.close()
    who = (operator or getpass.getuser()).strip()
    if not who or not org.strip():
        raise _fail("--operator and --org name who exports (the access log records them)", 2)
    reader = TokenClaims(who, org.strip(), org.strip(), "other", frozenset({"operator"}))
    try:
        access_log = AccessLogStore(AccessLogSettings().access_log())
        record_access(access_log, reader, str(cid), "export", "granted")
    except Exception as error:  # nothing leaves without its record
        raise _fail(f"the export could not be recorded in the access log: {error}", 2) from None
    document = {
        "format": "vss-case-export/1",
        "case_id": str(cid),
        "exported_at": datetime.now(UTC).isoformat(),
        "head": {"version": head[0], "hash": head[1]} if head else None,
        "verification": {"verifies": True}
        if broken is None
        else {"verifies": False, "version": broken.version, "reason": broken.reason},
        "events": events,
        "state": state,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        sys.stdout.write(text)
    else:
        try:  # a whole case: the operator's alone, and never over another file
            create_private(out_file, text.encode())
        except FileExistsError:
            raise _fail(f"{out_file} exists already: choose another file", 2) from None
        out.print(f"exported {len(events)} events of case {cid} to {out_file}", highlight=False)
    if broken is not None:
        raise _fail(f"case {cid} does not verify at version {broken.version}: {broken.reason}")


@app.command()
def generate(
    cases: Annotated[int, typer.Option(help="How many cases to generate")],
    seed: Annotated[int, typer.Option(help="The same seed gives the same cases")] = 1,
    end: Annotated[
        str | None, typer.Option(help="Last day of the timeline, YYYY-MM-DD [default: today]")
    ] = None,
    span_days: Annotated[int, typer.Option(help="Days of the timeline before --end")] = 1095,
) -> None:
    """Generate realistic cases through the case application into the configured case store."""
    try:
        last_day = date.fromisoformat(end) if end is not None else None
    except ValueError:
        raise _fail(f"--end {end!r} is not a date (YYYY-MM-DD)", 2) from None
    try:
        wanted = GeneratorSettings(cases=cases, seed=seed, end=last_day, span_days=span_days).validated()
    except InvalidGeneratorSettings as error:
        raise _fail(str(error), 2) from None
    settings = CaseSettings()
    try:
        store = generation_store(settings.store_url(), cases, signer=settings.commit_signer())
    except (StoreUrlInvalid, SigningKeyMissing) as error:
        raise _fail(str(error), 2) from None
    try:
        store.check_migrated()
        if err.is_terminal:
            with ProgressBar(console=err, transient=True) as bar:
                task = bar.add_task("generating (simulated days)", total=wanted.span_days)
                report = generate_cases(
                    store,
                    wanted,
                    policy=CasePolicy(settings.follow_up_max_months),
                    progress=lambda done, total: bar.update(task, completed=done),
                )
        else:
            report = generate_cases(store, wanted, policy=CasePolicy(settings.follow_up_max_months))
    except StoreNotMigrated as error:
        raise _fail(str(error), 2) from None
    except CaseAlreadyExists as error:
        raise _fail(f"{error}: the store holds this seed's cases already; choose another --seed", 2) from None
    except Exception as error:  # the store cannot be reached or written
        raise _fail(f"generation failed: {type(error).__name__}: {error}") from None
    finally:
        store.close()
    out.print(
        f"generated {report.cases:,} cases, {report.events:,} events in {report.seconds:.1f} s"
        f" ({report.events_per_second:,.0f} events/s); last log position {report.last_position:,}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("nats-config")
def nats_config(
    organisations_file: Annotated[
        Path | None,
        typer.Option(
            "--organisations",
            help="The organisations file [default: VSS_ORGANISATIONS (or VSS_NOTIFY_ORGANISATIONS)]",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Directory for the configuration and seeds [default: <data dir>/nats-auth]"
        ),
    ] = None,
    rotate: Annotated[
        list[str] | None,
        typer.Option(help="Replace this user's seed: an organisation id or a VSS role; repeat for several"),
    ] = None,
) -> None:
    """Generate the nats-server authorization: one nkey user per VSS role and per organisation.

    Writes ``authorization.conf`` (public keys and permissions only: include it from the
    server's configuration) and, 0600, the seed of each VSS role and of each organisation
    that did not give its own public key. Existing seeds are kept unless ``--rotate``d.
    """
    path = organisations_file or OrganisationsSettings().organisations
    if path is None:
        raise _fail("give --organisations FILE (or set VSS_ORGANISATIONS)", 2)
    try:
        organisations = load_organisations(path)
    except OrganisationsFileInvalid as error:
        raise _fail(str(error), 2) from None
    roles = {role.value for role in InternalRole}
    unknown = sorted(set(rotate or ()) - roles - set(organisations))
    if unknown:
        raise _fail(
            f"--rotate {', '.join(unknown)}: neither a VSS role ({', '.join(sorted(roles))})"
            " nor an organisation of the file",
            2,
        )
    own_key = sorted(set(rotate or ()) & {o.id for o in organisations.values() if o.nats_public_key})
    if own_key:
        raise _fail(
            f"--rotate {', '.join(own_key)}: the organisation holds its own seed; it sends a new"
            " public key for the organisations file",
            2,
        )
    directory = out_dir or credentials_dir(CaseSettings().data_dir)
    written = write_nats_config(directory, organisations, rotate=frozenset(rotate or ()))
    out.print(f"server authorization  {written.config_file}", highlight=False, soft_wrap=True)
    for role, seed in written.internal.items():
        out.print(f"  vss {role.value:<14} {seed}", highlight=False, soft_wrap=True)
    for org, org_seed in written.organisations.items():
        given = str(org_seed) if org_seed is not None else "its own key (public key from the file)"
        out.print(f"  {org:<18} {given}  inbox {inbox_prefix(org)}", highlight=False, soft_wrap=True)
    out.print(
        "include the authorization from the server's configuration and reload it (nats-server --signal"
        " reload); give each process VSS_NATS_NKEY_SEED_FILE and each organisation its seed file",
        highlight=False,
        soft_wrap=True,
    )


def _embedded_organisations(settings: CaseSettings) -> Organisations:
    """The organisations file's, else the demo set (written once to <data dir>/organisations.json)."""
    configured = OrganisationsSettings().organisations
    if configured is not None:
        return load_organisations(configured)
    demo = settings.data_dir.resolve() / "organisations.json"
    if not demo.exists():
        write_private(demo, demo_organisations_document())
    return load_organisations(demo)


def _use_operator_credentials(bus: BusSettings, data_dir: Path) -> None:
    """On the embedded server, this CLI connects as the operator (unless credentials are set)."""
    seed = internal_seed_path(credentials_dir(data_dir.resolve()), InternalRole.OPERATOR)
    if bus.nats_embedded and bus.nats_auth().anonymous and seed.exists():
        os.environ["VSS_NATS_NKEY_SEED_FILE"] = str(seed)


# Without these nothing works: `vss up` stops if one does not start (later deaths are restarted).
CORE_PARTS = ("postgres", "nats", "nats-0", "nats-1", "nats-2", "case", "case-2", "mail-sink")


def _nats_part(server: EmbeddedNatsServer, name: str, logs: Path) -> Part:
    return Part(
        name,
        server.command(),
        server.url,
        # JetStream on: a node restarted alone is up before the others see it again.
        f"{server.monitor_url}/healthz?js-enabled-only=true",
        logs / f"{name}.log",
    )


def _parts(
    settings: CaseSettings,
    bus: BusSettings,
    *,
    embedded_nats: bool,
    credentials: NatsCredentials | None = None,
    cluster: list[EmbeddedNatsServer] | None = None,
    case_port_2: int | None = None,
    sink: MailSinkPart | None = None,
) -> list[Part]:
    """What `vss up` starts, in start order (stopped in reverse); `--cluster`: three NATS nodes
    instead of one and a second case API process on ``case_port_2``; ``sink``: the local mail
    sink, its own process, started before the notifications service and given to it as its relay."""
    data = settings.data_dir.resolve()
    logs = data / "logs"
    parts: list[Part] = []
    if cluster is not None:
        parts += [_nats_part(node, node.server_name.replace(CLUSTER_NAME, "nats"), logs) for node in cluster]
    elif embedded_nats:
        server = EmbeddedNatsServer(
            data / "nats",
            port=bus.nats_port,
            monitor_port=bus.nats_monitor_port,
            config_file=credentials.config_file if credentials else None,
        )
        parts.append(_nats_part(server, "nats", logs))
    for entry in SERVICES:
        api = entry.api() if entry.api is not None else None
        relay: dict[str, str] = {}
        if entry.name == "notifications" and sink is not None:
            parts.append(
                Part(
                    sink.name,
                    sink.command(),
                    sink.url,
                    log_file=logs / f"{sink.name}.log",
                    ready=sink.answers,
                    env={"VSS_NICE": "0"},  # an urgent e-mail waits on it
                )
            )
            relay = sink.notifications_env()
        parts.append(
            Part(
                entry.name,
                entry.command(),
                api or (entry.location() if entry.location is not None else bus.nats()),
                f"{api}/health" if api is not None else None,
                logs / f"{entry.name}.log",
                ready=entry.holds_lease or (entry.readiness() if entry.readiness is not None else None),
                # Every part its own: a VSS_NICE of the shell must not lower the others.
                env={"VSS_NICE": str(settings.background_nice if entry.background else 0), **relay},
            )
        )
        if entry.name == "case" and case_port_2 is not None:  # the same cases, another process
            second = f"http://{settings.case_host}:{case_port_2}"
            parts.append(
                Part(
                    "case-2",
                    entry.command(),
                    second,
                    f"{second}/health",
                    logs / "case-2.log",
                    env={"VSS_CASE_PORT": str(case_port_2)},
                )
            )
    return parts


def _cluster_checks(settings: CaseSettings, bus: BusSettings, topology: ClusterSettings) -> None:
    """What makes `vss up --cluster` impossible before anything starts: exit 2, one line."""
    if not bus.nats_embedded:
        raise _fail("--cluster starts its own three NATS nodes: unset VSS_NATS_URL", 2)
    for setting in DATABASES:
        given = os.environ.get(setting, "")
        if given and not given.startswith(("postgresql://", "postgres://")):
            raise _fail(
                f"--cluster puts every store on PostgreSQL: {setting} is {given.split('@')[-1]}"
                " (unset it, or give a postgresql:// URL)",
                2,
            )
    dsn = topology.postgres_dsn
    if dsn and not dsn.startswith(("postgresql://", "postgres://")):
        raise _fail("VSS_POSTGRES_DSN must be a postgresql:// URL", 2)
    taken = [
        *cluster_ports(bus.nats_port, bus.nats_monitor_port, topology.nats_route_port),
        (topology.case_port_2, "VSS_CASE_PORT_2"),
        *([] if dsn else [(topology.postgres_port, "VSS_POSTGRES_PORT")]),
    ]
    if topology.case_port_2 == settings.case_port:
        raise _fail("VSS_CASE_PORT_2 must differ from VSS_CASE_PORT", 2)
    for port, what in taken:
        if not port_is_free(port):
            raise _fail(f"port {port} for `vss up --cluster` is taken ({what} sets another)")
    if not dsn:
        try:
            postgres_binaries()
        except PostgresUnavailable as error:
            raise _fail(str(error), 2) from None


def _start_postgres(
    settings: CaseSettings, topology: ClusterSettings, stopped: Callable[[], bool]
) -> tuple[Part | None, str]:
    """The embedded server as a supervised part, started and answering (or the DSN's server);
    then each store's database on it, its URL set for this process and the parts."""
    part, server_url = None, topology.postgres_dsn or ""
    if not server_url:
        server = EmbeddedPostgres(settings.data_dir.resolve() / "postgres", topology.postgres_port)
        try:
            server.prepare()
        except PostgresUnavailable as error:
            raise _fail(str(error)) from None
        server_url = server.url()
        part = Part(
            "postgres",
            server.command(),
            without_password(server_url),
            log_file=settings.data_dir.resolve() / "logs" / "postgres.log",
            ready=lambda: postgres_answers(server_url),
            user=server.user,
        )
        part.start(dict(os.environ))
        if not part.wait_healthy(stopped, timeout=60):
            if not stopped():
                part.stop()
                raise _fail(f"postgres did not start on {part.url}; see {part.log_file}")
            part.stop()
            raise typer.Exit(0)
    try:
        urls = create_databases(server_url)
    except PostgresUnavailable as error:
        if part is not None:
            part.stop()
        raise _fail(str(error)) from None
    for setting, url in urls.items():
        os.environ.setdefault(setting, url)  # a store's own postgresql:// URL, if given, wins
    return part, server_url


def _distinct_ports(bus: BusSettings, notifications: NotificationsSettings, *, embedded_nats: bool) -> None:
    """One line and exit 2 if two parts of `vss up` are given the same port (the second would
    never start, and be restarted for ever)."""
    claims = [
        (urlsplit(entry.api()).port, entry.port_variable or entry.name)
        for entry in SERVICES
        if entry.api is not None
    ]
    if not notifications.smtp_host:
        claims.append((notifications.smtp_port, "VSS_SMTP_PORT"))
    if embedded_nats:
        claims += [(bus.nats_port, "VSS_NATS_PORT"), (bus.nats_monitor_port, "VSS_NATS_MONITOR_PORT")]
    for variable in ("VSS_RELAY_METRICS_PORT", "VSS_PROJECTOR_METRICS_PORT", "VSS_SHARING_METRICS_PORT"):
        if (value := os.environ.get(variable, "")).isdigit():
            claims.append((int(value), variable))
    seen: dict[int, str] = {}
    for port, what in claims:
        if port is None:
            continue
        if port in seen:
            raise _fail(
                f"port {port} is given twice, by {seen[port]} and {what}: give each part its own", code=2
            )
        seen[port] = what


@app.command()
def up(
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="The production topology on this machine (deploy/README.md): three NATS nodes"
            " (streams at 3 replicas), every store on PostgreSQL, two case API processes",
        ),
    ] = False,
) -> None:
    """Start the whole system on the embedded defaults; Ctrl-C stops it cleanly."""
    settings = CaseSettings()
    bus = BusSettings()
    # The embedded nats-server runs unless a NATS URL is given (then the same processes use that).
    embedded_nats = bus.nats_embedded
    topology = ClusterSettings() if cluster else None
    if topology is not None:
        _cluster_checks(settings, bus, topology)
    notifications = NotificationsSettings()
    _distinct_ports(bus, notifications, embedded_nats=embedded_nats and topology is None)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # stores, keys, logs, mail
    if embedded_nats and topology is None:
        for port, what in (
            (bus.nats_port, "VSS_NATS_PORT"),
            (bus.nats_monitor_port, "VSS_NATS_MONITOR_PORT"),
        ):
            if not port_is_free(port):
                raise _fail(f"port {port} for the embedded nats-server is taken ({what} sets another)")
    if not notifications.smtp_host and not port_is_free(notifications.smtp_port):
        raise _fail(
            f"port {notifications.smtp_port} for the local mail sink is taken (VSS_SMTP_PORT sets another)"
        )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Handlers for both: a shell that starts `vss up` in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parts: list[Part] = []
    postgres_url = ""
    try:
        if topology is not None:
            postgres, postgres_url = _start_postgres(settings, topology, lambda: stopping)
            parts += [postgres] if postgres is not None else []
            settings = CaseSettings()  # now with the stores' PostgreSQL URLs
        for entry in SERVICES:
            if entry.store is None:
                continue
            try:
                report = entry.store.migrate(entry.store.url())
            except Exception as error:
                raise _fail(f"cannot prepare the {entry.name} store: {error}") from None
            # Started anyway: `vss verify` names them too.
            for broken in report.not_sealed if report is not None else ():
                err.print(
                    f"vss: case {broken.case_id} left unsigned, at version {broken.version}: {broken.reason}"
                )
        (settings.data_dir / "up.json").unlink(missing_ok=True)  # a stale one from a crash
        credentials, organisations_file = None, None
        if embedded_nats:  # the embedded server authorizes like a production one (ADR 0010)
            try:
                organisations = _embedded_organisations(settings)
            except OrganisationsFileInvalid as error:
                raise _fail(str(error), 2) from None
            credentials = write_nats_config(credentials_dir(settings.data_dir.resolve()), organisations)
            if organisations.source is not None:
                organisations_file = str(organisations.source)
                os.environ.setdefault("VSS_ORGANISATIONS", organisations_file)
            _use_operator_credentials(bus, settings.data_dir)
        nodes = None
        if topology is not None:
            nodes = cluster_nodes(
                settings.data_dir.resolve(),
                port=bus.nats_port,
                monitor_port=bus.nats_monitor_port,
                route_port=topology.nats_route_port,
                authorization=credentials.config_file if credentials else None,
            )
            # Every part (and this CLI's own checks) on every node, everything at three replicas.
            os.environ["VSS_NATS_URL"] = ",".join(node.url for node in nodes)
            os.environ["VSS_NATS_REPLICAS"] = str(len(nodes))
        bus = BusSettings()
        env = {**os.environ, "VSS_DATA_DIR": str(settings.data_dir.resolve()), "VSS_NATS_URL": bus.nats()}
        sink = mail_sink(notifications)
        parts += _parts(
            settings,
            bus,
            embedded_nats=embedded_nats,
            credentials=credentials,
            cluster=nodes,
            case_port_2=topology.case_port_2 if topology is not None else None,
            sink=sink,
        )
        if credentials is not None:
            env.pop("VSS_NATS_NKEY_SEED_FILE", None)  # the operator's is this CLI's own, not the parts'
            roles = {entry.name: entry.role for entry in SERVICES} | {"case-2": InternalRole.CASE}
            for part in parts:
                if part.name in roles:
                    seed = str(credentials.internal[roles[part.name]])
                    part.env = {**part.env, "VSS_NATS_NKEY_SEED_FILE": seed}
        ports = {entry.name: entry.port_variable for entry in SERVICES if entry.port_variable}
        ports["case-2"] = "VSS_CASE_PORT_2"
        ports["mail-sink"] = "VSS_SMTP_PORT"
        for part in parts:
            if part.running():
                continue  # PostgreSQL: started before the stores were migrated
            part.start(env)
            if not part.wait_healthy(lambda: stopping):
                if stopping:
                    return
                hint = f" (is the port free? {ports[part.name]} sets it)" if part.name in ports else ""
                if part.name in CORE_PARTS:
                    raise _fail(f"{part.name} did not start on {part.url}{hint}; see {part.log_file}")
                # The rest is supervised like a part that died later: retried, then failing.
                err.print(f"vss: {part.name} did not start on {part.url}{hint}; see {part.log_file}")
            if (
                nodes is not None
                and part.name == f"nats-{len(nodes) - 1}"
                and not _cluster_current(nodes, lambda: stopping)
            ):
                if stopping:
                    return
                raise _fail(f"the NATS cluster elected no leader in 60 s; see {part.log_file} and its peers'")
        base = next(part.url for part in parts if part.name == "case")
        case_apis = [part.url for part in parts if part.name in ("case", "case-2")]
        query = next(part.url for part in parts if part.name == "query")
        meetings_api = next(part.url for part in parts if part.name == "meetings")
        notifications_api = next(part.url for part in parts if part.name == "notifications")
        mail = (
            str(notifications.mail_dir().resolve())
            if not notifications.smtp_host
            else f"smtp://{notifications.smtp_host}:{notifications.smtp_port}"
        )
        stores = {entry.name: entry.store.url() for entry in SERVICES if entry.store is not None}
        stores = {name: url.split("@")[-1] for name, url in stores.items()}
        stores["read models"] = ProjectionsSettings().read_models().split("@")[-1]
        stores["access log"] = AccessLogSettings().access_log().split("@")[-1]
        state: dict[str, Any] = {
            "topology": "cluster" if topology is not None else "single",
            "meetings_api": meetings_api,
            "meetings_docs": f"{meetings_api}/docs",
            "notifications_api": notifications_api,
            "notifications_docs": f"{notifications_api}/docs",
            "mail": mail,
            "mail_sink": {"url": sink.url, "mail": sink.mail_dir} if sink is not None else None,
            "case_api": base,
            "case_apis": case_apis,
            "case_docs": f"{base}/docs",
            "query_api": query,
            "query_docs": f"{query}/docs",
            "nats_url": bus.nats(),
            "nats_embedded": embedded_nats,
            "nats_replicas": bus.nats_replicas,
            "nats_nodes": [
                {"name": f"nats-{i}", "url": node.url, "monitor": node.monitor_url}
                for i, node in enumerate(nodes or [])
            ],
            "stores": stores,
            "organisations": organisations_file,
            "data_dir": str(settings.data_dir.resolve()),
            "parts": [part.describe() for part in parts],
        }
        if postgres_url:  # up.json is private (0600): `vss status` asks the server with it
            state["postgres_url"] = postgres_url
        write_private(settings.data_dir / "up.json", json.dumps(state, indent=2).encode())
        out.print(
            "[bold]VSS is up[/bold]"
            + (" as the production topology (deploy/README.md)" if topology is not None else "")
            + " (each API's docs at its /docs)\n"
            + "".join(f"  case API           {url}\n" for url in case_apis)
            + f"  query API          {query}\n"
            f"  meetings API       {meetings_api}\n"
            f"  notifications API  {notifications_api}\n"
            f"  mail               {mail}\n"
            f"  sharing            {SharingSettings().share_names().stream} (each organisation's share)\n"
            f"  NATS               {bus.nats()}{' (embedded)' if embedded_nats else ''}"
            + (f", streams at {bus.nats_replicas} replicas\n" if topology is not None else "\n")
            + (
                f"  NATS users         {credentials.config_file.parent}"
                f" (organisations: {', '.join(credentials.organisations) or 'none'})\n"
                if credentials
                else ""
            )
            + (f"  PostgreSQL         {without_password(postgres_url)} (every store)\n" * bool(postgres_url))
            + f"  data               {state['data_dir']}\n"
            f"  logs               {settings.data_dir.resolve() / 'logs'}"
        )
        out.print(
            "  a token:   .venv/bin/vss token --user anna --org region-psykiatri"
            " --principal region --role coordinator"
        )
        out.print("Ctrl-C stops everything.")
        while not stopping:
            now = time.monotonic()
            changed = [part.supervise(env, now, lambda line: err.print(f"vss: {line}")) for part in parts]
            if any(changed):  # what `vss status` reads: restarts, last exit, failing
                state["parts"] = [part.describe() for part in parts]
                write_private(settings.data_dir / "up.json", json.dumps(state, indent=2).encode())
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        for part in reversed(parts):
            part.stop()
        (settings.data_dir / "up.json").unlink(missing_ok=True)
        if parts:
            out.print("VSS stopped.")


def _cluster_current(
    nodes: list[EmbeddedNatsServer], stopped: Callable[[], bool], timeout: float = 60
) -> bool:
    """Every node has a meta leader and has caught up: streams at three replicas can be made."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopped():
        if all(node.healthy(current=True) for node in nodes):
            return True
        time.sleep(0.2)
    return False


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """What `vss up` started, with URLs and health."""
    settings = CaseSettings()
    _use_operator_credentials(BusSettings(), settings.data_dir)
    bus = BusSettings()
    state_file = settings.data_dir / "up.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    pids = {part["name"]: part.get("pid") for part in state.get("parts", [])}
    supervised = {  # what `vss up` saw of each part: restarts, the last exit code, failing
        part["name"]: {key: part.get(key, default) for key, default in _SUPERVISION.items()}
        for part in state.get("parts", [])
    }
    recorded = {part["name"]: part.get("url") for part in state.get("parts", [])}
    nats_url = state.get("nats_url", bus.nats())
    nodes = state.get("nats_nodes") or []
    if nodes:  # `vss up --cluster`: this CLI's own checks (lags, leases) ask whichever node is up
        os.environ["VSS_NATS_URL"] = nats_url
        bus = BusSettings()
    parts: list[dict[str, Any]] = []
    if state.get("postgres_url"):  # its embedded PostgreSQL, or the server VSS_POSTGRES_DSN named
        postgres: dict[str, Any] = {
            "name": "postgres",
            "url": without_password(state["postgres_url"]),
            "stores": state.get("stores", {}),
            "healthy": postgres_answers(state["postgres_url"]),
        }
        postgres.update(supervised.get("postgres", {}))
        parts.append(postgres)
    for node in nodes:
        monitor = node["monitor"]
        node_part = {"name": node["name"], "url": node["url"], "embedded": True, "monitor": monitor}
        node_part["healthy"] = http_ok(f"{monitor}/healthz?js-enabled-only=true")
        node_part.update(supervised.get(node["name"], {}))
        parts.append(node_part)
    if not nodes:
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
        nats_part.update(supervised.get("nats", {}))
        parts.append(nats_part)
    nats_up = any(part["healthy"] for part in parts if part["name"].startswith("nats"))
    projections = ProjectionsSettings()
    shown = {  # what a part reports beside its URL
        "notifications": {"mail": state.get("mail")},
        "sharing": {"stream": SharingSettings().share_names().stream},
    }
    for entry in SERVICES:
        if entry.name == "notifications" and (sink := _mail_sink_status(state, pids)) is not None:
            sink.update(supervised.get(sink["name"], {}))
            sink["healthy"] = sink["healthy"] and not sink.get("failing")
            parts.append(sink)
        if entry.name == "case":  # each case API process (`vss up --cluster` runs two)
            for i, api in enumerate(state.get("case_apis") or [entry.api() if entry.api else ""]):
                name = entry.name if i == 0 else f"{entry.name}-{i + 1}"
                case: dict[str, Any] = {"name": name, "url": api, "docs": f"{api}/docs"}
                case["healthy"], case["health"] = _health(api)  # its answer too: store, signing key
                case.update(supervised.get(name, {}))
                case["healthy"] = case["healthy"] and not case.get("failing")
                parts.append(case)
            continue
        if entry.api is not None:
            api = entry.api()
            part: dict[str, Any] = {
                "name": entry.name,
                "url": api,
                "docs": f"{api}/docs",
                **shown.get(entry.name, {}),
            }
            part["healthy"] = http_ok(f"{api}/health")
        else:
            pid = pids.get(entry.name)
            part = {
                "name": entry.name,
                # What `vss up` gave it (its read models' URL is in the environment it set).
                "url": recorded.get(entry.name)
                or (entry.location() if entry.location is not None else nats_url),
                **shown.get(entry.name, {}),
                "pid": pid,
                "healthy": pid is not None
                and pid_alive(int(pid))
                and (entry.holds_lease is None or entry.holds_lease()),
            }
        part.update(supervised.get(entry.name, {}))
        if entry.consumers and nats_up:  # per durable consumer: messages not yet applied
            part["lag"] = consumer_lags(bus, entry.consumers)
        if part.get("failing"):
            part["healthy"] = False
        parts.append(part)
    report: dict[str, Any] = {
        "parts": parts,
        "data_dir": str(Path(settings.data_dir).resolve()),
        "case_store": state.get("stores", {}).get("case") or settings.store_url().split("@")[-1],
        "topology": state.get("topology", "single"),
        "logs": str(Path(settings.data_dir).resolve() / "logs"),
        "organisations": _organisations_status(state.get("organisations"), projections),
    }
    healthy = all(part["healthy"] for part in parts)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for part in parts:
            mark = "FAIL" if part.get("failing") else "up" if part["healthy"] else "DOWN"
            restarts = part.get("restarts") or 0
            history = f"  (restarted {restarts}×, last exit {part.get('last_exit')})" if restarts else ""
            lags = ", ".join(f"{d} {'?' if n is None else n}" for d, n in (part.get("lag") or {}).items())
            lag = f"  lag {lags}" if lags else ""
            mail = f"  into {part['mail']}" if part["name"] == "mail-sink" else ""
            line = f"{part['name']:<14} {mark:<5} {part['url']}{mail}{lag}{history}"
            out.print(line, highlight=False, soft_wrap=True)
        orgs = report["organisations"]
        if orgs is not None:
            waiting = ", ".join(
                f"{org} ({n} case{'s' if n != 1 else ''})" for org, n in orgs["unknown"].items()
            )
            mark = "WAIT" if waiting else "ok"
            known = f"{len(orgs['known'])} in {orgs['file'] or 'no organisations file'}"
            line = f"{known}; not in the file, their events wait: {waiting}" if waiting else known
            out.print(f"{'organisations':<14} {mark:<5} {line}", highlight=False, soft_wrap=True)
        out.print(f"{'data':<20} {report['data_dir']}")
    if not healthy:
        raise typer.Exit(1)


_SUPERVISION: dict[str, Any] = {"restarts": 0, "last_exit": None, "failing": False}


def _mail_sink_status(state: dict[str, Any], pids: dict[str, Any]) -> dict[str, Any] | None:
    """The local mail sink `vss up` started (from its state; without one, the sink it would
    start), up while it answers SMTP; None when e-mail goes to a relay of its own."""
    if state:
        where = state.get("mail_sink")
    else:
        planned = mail_sink(NotificationsSettings())
        where = {"url": planned.url, "mail": planned.mail_dir} if planned is not None else None
    if not where:
        return None
    address = urlsplit(where["url"])
    pid = pids.get("mail-sink")
    return {
        "name": "mail-sink",
        "url": where["url"],
        "mail": where["mail"],
        "pid": pid,
        "healthy": (pid is None or pid_alive(int(pid)))
        and smtp_answers(address.hostname or "127.0.0.1", address.port or 25),
    }


def _health(api: str) -> tuple[bool, Any]:
    """Whether the API answers its health check, and what it answers (None: no JSON)."""
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200, json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False, None


def _organisations_status(
    started_with: str | None, projections: ProjectionsSettings
) -> dict[str, Any] | None:
    """Who VSS may share with (the read models' grants) against the organisations file: an
    organisation the file does not name has no NATS user, so its share events wait (none are
    dropped) until it is added and `vss nats-config` run. None: no read models to ask."""
    configured = OrganisationsSettings().organisations
    path = configured or (Path(started_with) if started_with else None)
    try:
        organisations = load_organisations(path)
    except OrganisationsFileInvalid as error:
        return {"file": str(path), "error": str(error), "known": [], "unknown": {}}
    try:
        location = ReadModelLocation(projections.read_models())
        try:
            generation = location.current()
            if generation is None:
                return None
            models = ReadModels(location.connect(generation))
            try:
                granted = models.granted_organisations(date.today().isoformat())
            finally:
                models.close()
        finally:
            location.close()
    except Exception:  # no read models (yet): nothing to compare with
        return None
    unknown = {org: granted[org] for org in organisations.unknown(frozenset(granted))}
    return {"file": str(path) if path else None, "known": sorted(organisations), "unknown": unknown}


projections_app = typer.Typer(no_args_is_help=True, help="Read models: rebuild from history, status.")
app.add_typer(projections_app, name="projections")


@projections_app.command("rebuild")
def projections_rebuild(
    switch: Annotated[bool, typer.Option(help="Serve the new copy once it has caught up")] = True,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per read from the stream")] = 1000,
) -> None:
    """Rebuild every read model from the start of the case stream (and of the notifications
    stream, for the journal's delivery record, and the meetings stream, for each case's
    meetings, when they exist) into a fresh copy, then switch.

    The current copy keeps serving meanwhile; a running projector follows the switch.
    """
    settings = ProjectionsSettings()
    _use_operator_credentials(settings, settings.data_dir)
    try:
        location = ReadModelLocation(settings.read_models())
    except ReadModelUrlInvalid as error:
        raise _fail(str(error), 2) from None

    def show(progress: Progress) -> None:
        eta = f"{progress.eta_seconds:,.0f} s" if progress.eta_seconds is not None else "?"
        out.print(
            f"  {progress.events:>10,} events  {progress.rate:>9,.0f} ev/s"
            f"  position {progress.position:,}/{progress.target:,}  ETA {eta}",
            highlight=False,
        )

    try:
        report = asyncio.run(
            rebuild(
                location,
                settings.nats(),
                settings.bus_names(),
                batch=batch,
                switch=switch,
                progress=show,
                notifications=settings.notification_names(),
                meetings=settings.meeting_names(),
                kept_views=settings.rebuild_kept_views,
            )
        )
    except HistoryIncomplete as error:
        raise _fail(str(error)) from None
    except Exception as error:  # the bus or the database cannot be reached
        raise _fail(f"rebuild failed: {type(error).__name__}: {error}") from None
    finally:
        location.close()
    what = "now serving" if report.switched else "built, not serving (--no-switch)"
    out.print(
        f"generation {report.generation} {what}: {report.events:,} events to stream sequence"
        f" {report.position:,} in {report.seconds:.1f} s ({report.rate:,.0f} ev/s);"
        f" {report.skipped} skipped; {report.deliveries:,} delivery record events to"
        f" {settings.notification_names().stream} sequence {report.deliveries_position:,},"
        f" {report.deliveries_skipped} skipped; {report.meetings:,} meeting events to"
        f" {settings.meeting_names().stream} sequence {report.meetings_position:,},"
        f" {report.meetings_skipped} skipped; {report.views_written_out:,} case views written out"
        f" and {report.views_read_back:,} read back (VSS_REBUILD_KEPT_VIEWS"
        f" {settings.rebuild_kept_views:,}); previous {report.previous or '-'}"
    )


@projections_app.command("status")
def projections_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """The serving read models' position and lag behind the case stream (and the notifications
    and meetings streams)."""
    settings = ProjectionsSettings()
    _use_operator_credentials(settings, settings.data_dir)
    try:
        location = ReadModelLocation(settings.read_models())
        generation = location.current()
        if generation is None:
            raise NoReadModels(
                "no read models yet: start the projector (vss up) or run vss projections rebuild"
            )
    except (ReadModelUrlInvalid, NoReadModels) as error:
        raise _fail(str(error), 2) from None
    models = ReadModels(location.connect(generation))
    try:
        position = models.position()
        cases = models.case_count()
        deliveries_applied = models.deliveries_applied_through()
        meetings_applied = models.meetings_applied_through()
    finally:
        models.close()
        location.close()
    try:
        last = asyncio.run(_stream_last_sequence(settings.nats(), settings.bus_names().stream))
        deliveries_last = asyncio.run(
            _stream_last_sequence(settings.nats(), settings.notification_names().stream, missing_ok=True)
        )
        meetings_last = asyncio.run(
            _stream_last_sequence(settings.nats(), settings.meeting_names().stream, missing_ok=True)
        )
    except Exception as error:
        raise _fail(f"cannot read the case stream's position: {type(error).__name__}: {error}") from None
    report = {
        "generation": generation,
        "generations": location.generations(),
        "stream_sequence": position.stream_sequence,
        "log_position": position.log_position,
        "stream_last_sequence": last,
        "lag": max(0, last - position.stream_sequence),
        "cases": cases,
        "updated_at": position.updated_at,
        "deliveries_stream_sequence": deliveries_applied,
        "deliveries_lag": max(0, deliveries_last - deliveries_applied),
        "meetings_stream_sequence": meetings_applied,
        "meetings_lag": max(0, meetings_last - meetings_applied),
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        out.print(f"{key:<22} {value}", highlight=False)


async def _stream_last_sequence(url: str, stream: str, *, missing_ok: bool = False) -> int:
    """The stream's last sequence (0 for a stream not declared yet, when ``missing_ok``)."""
    import nats  # noqa: PLC0415 - only this command needs a plain connection
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    nc = await nats.connect(
        server_urls(url), connect_timeout=2, max_reconnect_attempts=0, **BusSettings().nats_auth().options()
    )
    try:
        return int((await nc.jetstream().stream_info(stream)).state.last_seq)
    except NotFoundError:
        if missing_ok:
            return 0
        raise
    finally:
        await nc.close()


access_log_app = typer.Typer(no_args_is_help=True, help="The access log (who read which case's data).")
app.add_typer(access_log_app, name="access-log")


@access_log_app.command("purge")
def access_log_purge() -> None:
    """Delete access-log records older than VSS_ACCESS_LOG_RETENTION_DAYS (at least five years)."""
    settings = ProjectionsSettings()
    store = AccessLogStore(settings.access_log())
    removed = store.purge(settings.access_log_retention_days)
    out.print(f"{removed} record(s) older than {settings.access_log_retention_days} days removed")


notifications_app = typer.Typer(no_args_is_help=True, help="Notifications: the acknowledgement links' key.")
app.add_typer(notifications_app, name="notifications")


@notifications_app.command("rotate-ack-key")
def notifications_rotate_ack_key() -> None:
    """A new key for acknowledgement links; links already sent keep working for the overlap
    (VSS_ACK_LINK_KEY_OVERLAP_HOURS). Restart the notifications service to use it."""
    settings = NotificationsSettings()
    try:
        settings.rotate_link_key(datetime.now(UTC))
    except LinkKeyNotRotatable as error:
        raise _fail(str(error)) from None
    out.print(
        f"new key in {settings.link_key_file()}; links signed with the previous one work for"
        f" {settings.ack_link_key_overlap_hours:g} h more. Restart the notifications service.",
        highlight=False,
        soft_wrap=True,
    )


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
