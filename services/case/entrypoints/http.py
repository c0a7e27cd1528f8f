"""The command API: one route per command, each decoding, calling one use case, mapping errors.

Conventions every write shares:
- ``If-Match: "<version>"`` makes the write conditional on the case's version (409 if not);
- ``Idempotency-Key: <key>`` makes a retry return the first result and append nothing;
- the response carries the case's new ``version`` and the global log ``position``
  (also as ``ETag`` and ``VSS-Log-Position``), for read-your-writes in the query API;
- the actor of every event comes from the bearer token, never from the body;
- every read of the case (``GET`` case, ``?as_of=``, history) and every refusal (a missing
  role, an organisation not involved in the case) is recorded in the access log before the
  answer; a write by an organisation not involved is refused before its body is read;
- who may write is the case's own rule (the opening organisation, the coordinators'
  organisations, the client), so what happened can always be recorded; but a refusal by the
  case's rules names its people and facts, so a writer the one access rule does not let read
  the case (as of the version the command was decided on) gets 403 as for a read
  (``no_consent``), logged, instead of the rule's answer.

"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AwareDatetime, BaseModel

from services.case.application.ports import CaseAlreadyExists, CaseNotFound, CaseNotYetOpened, HistoryEntry
from services.case.application.service import (
    CaseService,
    CaseUnreadable,
    CommandResult,
    IdempotencyKeyReused,
    VersionConflict,
)
from services.case.application.service import (
    Request as CommandRequest,
)
from services.case.domain import commands as cmd
from services.case.domain.case import Case, CaseState
from services.case.domain.errors import (
    ActorNotInvolved,
    CaseRuleViolation,
    InvalidCommand,
    NotAllowed,
    NotTheClient,
)
from services.case.domain.events import Actor
from services.shared.access import AccessRecorder, Grant, grants, may_read, record_access, refusal
from services.shared.auth import TokenService
from services.shared.http_app import ThreadedEndpointRoute, deps_of, service_app
from services.shared.http_auth import bearer, verified_claims_async
from services.shared.inputs import (
    WINDOW_DESCRIPTION,
    DateWindow,
    PersonOrganisationId,
    PersonUserId,
    refuse_bad_input,
)
from services.shared.problems import (
    REQUEST_ID,
    ProblemException,
    problem_response,
    problem_responses,
)
from services.shared.worker_threads import in_worker_thread
from vss_contracts.signing import KEY_SET_PATH
from vss_contracts.types import ActorPrincipal

STOCKHOLM = ZoneInfo("Europe/Stockholm")  # what a date means: the end of that day here
WRITE_ROLE = "coordinator"
READ_ROLES = frozenset({"coordinator", "operator"})
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d+)"?$')
MAX_VERSION_DIGITS = 18  # a version or cursor fits in 64 bits
MAX_CURSOR = 2**63 - 1
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


# ------------------------------------------------------------------------ response models
class EventRef(BaseModel):
    id: UUID
    type: str
    version: int
    position: int


class WriteResult(BaseModel):
    case_id: UUID
    version: int
    position: int
    events: list[EventRef]
    created_id: str | None = None


class CaseView(BaseModel):
    case_id: UUID
    version: int
    hash: str
    state: CaseState
    as_of: datetime | None = None  # set when the case is shown as it stood at that moment


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_after_version: int | None


# -------------------------------------------------------------------------------- wiring
@dataclass(frozen=True, slots=True)
class _Dependencies:
    service: CaseService
    tokens: TokenService
    access_log: AccessRecorder  # every read of a case, and every refusal
    window: DateWindow


router = APIRouter(
    prefix="/v1/cases",
    tags=["cases"],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    route_class=ThreadedEndpointRoute,  # one hop to the thread pool per request, not two
)


class JsonWebKey(BaseModel):
    """One Ed25519 public key (RFC 8037)."""

    kty: str
    crv: str
    kid: str
    x: str
    alg: str | None = None
    use: str | None = None


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey]


def create_app(
    service: CaseService,
    tokens: TokenService,
    access_log: AccessRecorder,
    window: DateWindow | None = None,
    *,
    public_keys: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    app = service_app(
        title="VSS case service",
        description=(
            "Commands on a client's case (vård- och stödsamordning). Every accepted command appends "
            "events to the case's stream; every refusal is an RFC 9457 problem naming the rule. "
            + WINDOW_DESCRIPTION
        ),
        deps=_Dependencies(service, tokens, access_log, window or DateWindow()),
        routers=[router],
        health=service.store_reachable,
        direct=[router],
    )
    _install_domain_error_handlers(app)

    @app.get(KEY_SET_PATH, tags=["operations"], response_model=JsonWebKeySet)
    def signing_keys() -> dict[str, Any]:
        """The public keys that sign the case journal's commits (a JWKS; no token needed).

        Every key that ever signed stays in the set, so events signed before a rotation keep
        verifying; each signed event names its key (``vsskeyid``). See docs/verifying.md."""
        return public_keys() if public_keys is not None else {"keys": []}

    return app


def _install_domain_error_handlers(app: FastAPI) -> None:
    def rule(status: int, title: str, detail: str, code: str, **extra: Any) -> ProblemException:
        return ProblemException(status, title, detail, code=code, rule=code, **extra)

    def from_violation(e: Exception) -> ProblemException:
        assert isinstance(e, CaseRuleViolation)
        # A practice rule the command may break with a deviation_reason says so (ADR 0017).
        extra = {"deviation_allowed": True} if e.deviation_allowed else {}
        return rule(403 if isinstance(e, NotAllowed) else 409, e.title, e.detail, e.rule, **extra)

    def from_conflict(e: Exception) -> ProblemException:
        assert isinstance(e, VersionConflict)
        return rule(
            409,
            "The case has changed",
            str(e),
            "version_conflict",
            expected_version=e.expected,
            current_version=e.actual,
        )

    def from_invalid(e: Exception) -> ProblemException:
        assert isinstance(e, InvalidCommand)
        return ProblemException(422, "Invalid request", str(e), code="validation_failed", errors=e.errors)

    handlers: dict[type[Exception], Callable[[Exception], ProblemException]] = {
        CaseRuleViolation: from_violation,
        CaseNotFound: lambda e: ProblemException(404, "No such case", str(e), code="case_not_found"),
        CaseNotYetOpened: lambda e: rule(404, "The case was not open then", str(e), "case_not_open_then"),
        CaseAlreadyExists: lambda e: rule(409, "The case exists already", str(e), "case_already_exists"),
        VersionConflict: from_conflict,
        IdempotencyKeyReused: lambda e: rule(422, "Idempotency-Key reused", str(e), "idempotency_key_reused"),
        InvalidCommand: from_invalid,
    }
    for error_type, to_problem in handlers.items():

        async def handle(request: Request, error: Exception, to_problem: Any = to_problem) -> Response:
            problem = to_problem(error)
            return problem_response(
                request, problem.status, problem.title, problem.detail, code=problem.code, **problem.extra
            )

        app.add_exception_handler(error_type, handle)


# --------------------------------------------------------------------------- dependencies
def _deps(request: Request) -> _Dependencies:
    return deps_of(request, _Dependencies)


# What FastAPI solves per request costs per dependency, and a sync one a hop to the thread
# pool and back: the routes' dependencies (Cmd, ClientCmd, Reader, Service) are one
# ``async def`` each (plus the bearer scheme), and only what waits on the store or the
# network runs in the thread pool (ADR 0022).
async def get_service(request: Request) -> CaseService:
    return _deps(request).service


def _today(deps: _Dependencies) -> date:
    """Today in Stockholm, by the service's clock (the day the domain calls today)."""
    return deps.service.clock.now().astimezone(STOCKHOLM).date()


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    return await _actor(request, credentials)


async def _actor(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Actor:
    """Who asks, by their bearer token (401 without a valid one)."""
    claims = await verified_claims_async(_deps(request).tokens, credentials)
    return Actor(
        user_id=claims.user_id,
        organisation_id=claims.organisation_id,
        organisation_name=claims.organisation_name,
        principal=ActorPrincipal(claims.principal),
        roles=claims.roles,
    )


def _path_case(request: Request) -> str | None:
    """The case a request names in its path, if any (as given: it may not be a case id)."""
    value = request.path_params.get("case_id")
    return str(value) if value is not None else None


def _log(request: Request, who: Actor, resource: str, outcome: str, reason: str | None = None) -> None:
    record_access(_deps(request).access_log, who, _path_case(request), resource, outcome, reason)


def _refused(request: Request, who: Actor, resource: str, error: ProblemException) -> ProblemException:
    _log(request, who, resource, "denied", f"{error.code}: {error.detail}")
    return error


def writer(request: Request, who: Annotated[Actor, Depends(current_actor)]) -> Actor:
    if WRITE_ROLE not in who.roles:
        raise _refused(
            request,
            who,
            "command",
            ProblemException(
                403,
                "Forbidden",
                "recording facts in a case needs the coordinator role",
                code="role_required",
                rule="role_required",
            ),
        )
    if "case_id" in request.path_params:
        _ensure_may_write(request, who)
    return who


def writer_or_client(request: Request, who: Annotated[Actor, Depends(current_actor)]) -> Actor:
    """A coordinator (as :func:`writer`), or the case's own client: a command where the method
    gives the client the say (withdrawing consent, confirming the SIP)."""
    if who.principal is not ActorPrincipal.CLIENT:
        return writer(request, who)
    _ensure_may_write(request, who)
    return who


def _ensure_may_write(request: Request, who: Actor) -> None:
    """Refuse, logged, whoever may not write the case the path names: an organisation it does
    not involve (``actor_not_involved``), a client in a case not theirs."""
    try:
        case_id = UUID(str(request.path_params["case_id"]))
    except ValueError:
        return  # not a case id: the path's validation answers 422
    try:
        _deps(request).service.ensure_may_write(case_id, who)
    except NotAllowed as error:
        _log(request, who, "command", "denied", f"{error.rule}: {error.detail}")
        raise


async def reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Actor:
    who = await _actor(request, credentials)
    if who.principal is ActorPrincipal.CLIENT:
        return who  # their own case only: decided per case by the one access rule
    if not who.roles & READ_ROLES:
        raise await in_worker_thread(  # the refusal is logged in the access log first
            _refused,
            request,
            who,
            "case",
            ProblemException(
                403,
                "Forbidden",
                "reading a case here needs the coordinator or operator role"
                " (statistics are in the query API)",
                code="role_required",
                rule="role_required",
            ),
        )
    return who


def case_grants(state: CaseState) -> list[Grant]:
    """Who may see the case by the one access rule (``services.shared.access.grants``): its
    coordinators' organisations, those the consent in force covers until its end, and the
    opening organisation until a consent is given (the state keeps a withdrawn consent)."""
    consent = state.consent
    in_force = consent if consent is not None and consent.withdrawn_on is None else None
    until = in_force.valid_until if in_force is not None else None
    return grants(
        (c.organisation.id for c in state.coordinators.values()),
        in_force.organisations if in_force is not None else (),
        until.isoformat() if until else None,
        opened_by=state.opened_by.id,
        consent_given=consent is not None,
    )


def _may_read(request: Request, case: Case, who: Actor) -> bool:
    """Who may read a case here, as of now: an operator; else the one access rule."""
    if "operator" in who.roles and who.principal is not ActorPrincipal.CLIENT:
        return True
    client = case.state.client.personal_identity_number
    return may_read(who, case_grants(case.state), client, _today(_deps(request)).isoformat())


def _reads(request: Request, who: Actor) -> Callable[[Case], bool]:
    """:func:`_may_read` of ``who``, for a case to come."""
    return lambda case: _may_read(request, case, who)


def _no_access(request: Request, case_id: object, who: Actor, resource: str) -> ProblemException:
    """The refusal of one whom :func:`_may_read` does not admit, logged: 403 naming the rule."""
    rule, detail = refusal(who, case_id)
    _log(request, who, resource, "denied", f"{rule}: {detail}")
    return ProblemException(403, "Forbidden", detail, code=rule, rule=rule)


def _ensure_may_read(request: Request, case: Case, who: Actor, resource: str) -> None:
    """Refuse (403, logged) a reader :func:`_may_read` does not admit to ``case``."""
    if not _may_read(request, case, who):
        raise _no_access(request, case.id, who, resource)


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One write: the use cases and who asks, with the request's concurrency controls (and
    the HTTP request, for the access rule and the access log)."""

    service: CaseService
    request: CommandRequest
    window: DateWindow
    http: Request

    def admit(self, body: BaseModel) -> None:
        """422 for a date outside the window or a control character in a text of ``body``."""
        today = self.service.clock.now().astimezone(STOCKHOLM).date()
        refuse_bad_input(body, today=today, window=self.window)

    def fingerprinted(self, body: BaseModel) -> CommandRequest:
        return replace(self.request, fingerprint=_fingerprint(self.request.fingerprint, body))


@dataclass(frozen=True, slots=True)
class _Controls:
    """A command request's concurrency and tracing headers, checked."""

    expected_version: int | None
    idempotency_key: str | None
    causation_id: str | None


IfMatchHeader = Annotated[
    str,
    Header(
        description='Expected case version, e.g. "4" (at most 18 digits); malformed: 400',
        json_schema_extra={"pattern": r'^(\*|(W/)?"?[0-9]{1,18}"?)$'},
    ),
]
IdempotencyKeyHeader = Annotated[
    str,
    Header(
        description="Retry key: a retry returns the first result; 1–255 visible ASCII characters, else 400",
        json_schema_extra={"pattern": "^[!-~]{1,255}$"},
    ),
]
CausationIdHeader = Annotated[
    str,
    Header(
        description="The id of what caused this command (stored with its events); 1–128 visible"
        " ASCII characters, else 400",
        json_schema_extra={"pattern": REQUEST_ID.pattern},
    ),
]


def command_controls(
    if_match: IfMatchHeader = "",
    idempotency_key: IdempotencyKeyHeader = "",
    x_causation_id: CausationIdHeader = "",
) -> _Controls:
    if x_causation_id and not REQUEST_ID.match(x_causation_id):
        raise ProblemException(
            400,
            "Bad X-Causation-ID",
            "X-Causation-ID is 1–128 visible ASCII characters (a UUID fits)",
            code="bad_header",
            field="X-Causation-ID",
        )
    expected = None
    if if_match and if_match.strip() != "*":
        match = _IF_MATCH.match(if_match.strip())
        if match is None:
            raise ProblemException(
                400,
                "Bad If-Match",
                'If-Match takes the case version, e.g. "4"',
                code="bad_header",
                field="If-Match",
            )
        if len(match.group(1)) > MAX_VERSION_DIGITS:
            raise ProblemException(
                422,
                "Invalid request",
                f"If-Match: a case version has at most {MAX_VERSION_DIGITS} digits",
                code="validation_failed",
                field="If-Match",
                errors=[
                    {
                        "field": "header.If-Match",
                        "rule": "version_range",
                        "message": f"at most {MAX_VERSION_DIGITS} digits",
                    }
                ],
            )
        expected = int(match.group(1))
    if idempotency_key and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ProblemException(
            400,
            "Bad Idempotency-Key",
            "Idempotency-Key is 1–255 visible ASCII characters",
            code="bad_header",
            field="Idempotency-Key",
        )
    return _Controls(expected, idempotency_key or None, x_causation_id or None)


# A path Starlette's URL gives back as it is: ASCII path characters only, no second leading
# slash, nothing it escapes (?, #, \\) or that splitting a URL strips (spaces, controls).
_PLAIN_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~/%:@!$&'()*+,;=]*")


def _request_path(http: Request) -> str:
    """``http.url.path``, without building the URL (about 4 µs) when the scope's path is plain."""
    path = http.scope["path"]
    return path if type(path) is str and _PLAIN_PATH.fullmatch(path) else http.url.path


def _call(http: Request, who: Actor, controls: _Controls) -> CommandCall:
    request = CommandRequest(
        actor=who,
        correlation_id=http.state.correlation_id,
        causation_id=controls.causation_id,
        expected_version=controls.expected_version,
        idempotency_key=controls.idempotency_key,
        fingerprint=f"{http.method} {_request_path(http)}",
        reads=None if who.principal is ActorPrincipal.CLIENT else _reads(http, who),
    )
    deps = _deps(http)
    return CommandCall(deps.service, request, deps.window, http)


def _admitted_in_memory(request: Request, who: Actor, *, client_may: bool) -> bool:
    """Whether :func:`writer` (``client_may``: :func:`writer_or_client`) would admit ``who`` on
    what is in memory: the role, and the cached case. Then nothing waits on the store and no
    hop to the thread pool is needed; False (not cached, or a refusal, which is logged): ask
    them in the thread pool."""
    client = client_may and who.principal is ActorPrincipal.CLIENT
    if not client and WRITE_ROLE not in who.roles:
        return False
    case_id = request.path_params.get("case_id")
    if case_id is None:
        return not client  # opening a case: the role is all
    try:
        parsed = UUID(str(case_id))
    except ValueError:
        return True  # not a case id: the path's validation answers 422, as in writer
    return _deps(request).service.may_write_by_cache(parsed, who)


async def command_call(
    http: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    if_match: IfMatchHeader = "",
    idempotency_key: IdempotencyKeyHeader = "",
    x_causation_id: CausationIdHeader = "",
) -> CommandCall:
    """A coordinator's write, admitted in this order: the token (401), the role and the case's
    involvement (403; in the thread pool: it loads the case, and logs a refusal), the headers (400)."""
    who = await _actor(http, credentials)
    if not _admitted_in_memory(http, who, client_may=False):
        await in_worker_thread(writer, http, who)
    return _call(http, who, command_controls(if_match, idempotency_key, x_causation_id))


async def client_command_call(
    http: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    if_match: IfMatchHeader = "",
    idempotency_key: IdempotencyKeyHeader = "",
    x_causation_id: CausationIdHeader = "",
) -> CommandCall:
    """:func:`command_call` for a command the case's own client may give as well."""
    who = await _actor(http, credentials)
    if not _admitted_in_memory(http, who, client_may=True):
        await in_worker_thread(writer_or_client, http, who)
    return _call(http, who, command_controls(if_match, idempotency_key, x_causation_id))


Cmd = Annotated[CommandCall, Depends(command_call)]
ClientCmd = Annotated[CommandCall, Depends(client_command_call)]
Reader = Annotated[Actor, Depends(reader)]
Service = Annotated[CaseService, Depends(get_service)]


def respond(result: CommandResult, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The write's answer: :class:`WriteResult` as JSON, written straight from the result (its
    keys are the model's, in its order) rather than validated into the model and serialised."""
    headers = {**(headers or {}), "ETag": f'"{result.version}"', "VSS-Log-Position": str(result.position)}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return Response(orjson.dumps(result.to_json()), status, headers, media_type="application/json")


def run(call: CommandCall, body: BaseModel, case_id: UUID, action: Callable[[Case], object]) -> CommandResult:
    """``action`` on the case. A refusal by the case's rules tells of the case (its people,
    its facts), so it is a read: logged as granted to a writer who may read the case, and to
    one who may not (as of the version it was decided on) 403 as for a read, logged as denied."""
    call.admit(body)
    try:
        return call.service.execute(call.fingerprinted(body), case_id, action)
    except CaseUnreadable:
        raise _no_access(call.http, case_id, call.request.actor, "command") from None
    except (ActorNotInvolved, NotTheClient) as refused:
        # Not one who writes this case: logged as the early check logs it (this refusal is
        # decided on the stored case, which a cached copy that let the early check pass may be
        # behind).
        _log(call.http, call.request.actor, "command", "denied", f"{refused.rule}: {refused.detail}")
        raise
    except CaseRuleViolation as refused:
        # Any other rule, also one of what a writer of the case may do (a coordinator confirming
        # the client's SIP), is decided on the open case by one who may read it.
        _log(call.http, call.request.actor, "command_refusal", "granted", refused.rule)
        raise
    except InvalidCommand as invalid:  # judged against the case's state: it may name its people
        _log(
            call.http,
            call.request.actor,
            "command_refusal",
            "granted",
            invalid.errors[0].get("rule") if invalid.errors else None,
        )
        raise


# ------------------------------------------------------------------------------ routes
@router.post("", status_code=201, response_model=WriteResult, summary="Open a case (VSS-uppdrag)")
def open_case(body: cmd.OpenCase, call: Cmd) -> Response:
    call.admit(body)
    result = call.service.open_case(call.fingerprinted(body), body)
    return respond(result, 201, {"Location": f"/v1/cases/{result.case_id}"})


@router.get("/{case_id}", response_model=CaseView, summary="The case as it stands, or as it stood")
def get_case(
    request: Request,
    case_id: UUID,
    who: Reader,
    service: Service,
    response: Response,
    as_of: Annotated[
        date | AwareDatetime | None,
        Query(
            description="Show the case as it stood at this moment (a date: the end of that day,"
            " Europe/Stockholm), from the events recorded until then; within the date window"
            " around today (VSS_DATE_WINDOW_PAST_DAYS, VSS_DATE_WINDOW_FUTURE_DAYS), else 422"
        ),
    ] = None,
) -> CaseView:
    if as_of is not None:
        deps = _deps(request)
        day = as_of.date() if isinstance(as_of, datetime) else as_of
        error = deps.window.error("query.as_of", day, _today(deps))
        if error is not None:
            raise ProblemException(
                422, "Invalid request", error["message"], code="validation_failed", errors=[error]
            )
    case = service.get(case_id)
    resource = "case" if as_of is None else "case_as_of"
    _ensure_may_read(request, case, who, resource)  # who may see it is decided as of now
    if as_of is None:
        _log(request, who, resource, "granted")
        response.headers["ETag"] = f'"{case.version}"'
        return CaseView(case_id=case.id, version=case.version, hash=case.head_hash, state=case.state)
    moment = (
        as_of
        if isinstance(as_of, datetime)
        else datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=STOCKHOLM)
        - timedelta(microseconds=1)
    )
    then = service.as_of(case_id, moment)
    _log(request, who, resource, "granted", f"as of {moment.isoformat()}")
    return CaseView(
        case_id=then.id, version=then.version, hash=then.head_hash, state=then.state, as_of=moment
    )


@router.get("/{case_id}/history", response_model=HistoryPage, summary="The case's events with metadata")
def history(
    request: Request,
    case_id: UUID,
    who: Reader,
    service: Service,
    after_version: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> HistoryPage:
    case = service.get(case_id)
    _ensure_may_read(request, case, who, "history")
    items = service.history(case_id, after_version, limit)
    _log(request, who, "history", "granted")
    more = bool(items) and items[-1].version < case.version
    return HistoryPage(items=items, next_after_version=items[-1].version if more else None)


@router.post("/{case_id}/coordinators", response_model=WriteResult, summary="Assign a coordinator")
def assign(case_id: UUID, body: cmd.AssignCoordinator, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.assign_coordinator(body)))


@router.post(
    "/{case_id}/coordinators/{organisation_id}/{user_id}/unassignment",
    response_model=WriteResult,
    summary="Unassign a coordinator: the person (organisation and user id)",
)
def unassign_person(
    case_id: UUID,
    organisation_id: PersonOrganisationId,
    user_id: PersonUserId,
    body: cmd.UnassignCoordinator,
    call: Cmd,
) -> Response:
    return respond(run(call, body, case_id, lambda c: c.unassign_coordinator(user_id, body, organisation_id)))


@router.post(
    "/{case_id}/coordinators/{user_id}/unassignment",
    response_model=WriteResult,
    summary="Unassign the only coordinator with this user id",
    description="The coordinator assigned with this user id. When two assigned coordinators"
    " (of different organisations) share it, 409 with rule coordinator_ambiguous: use"
    " /{case_id}/coordinators/{organisation_id}/{user_id}/unassignment (ADR 0023).",
)
def unassign(case_id: UUID, user_id: PersonUserId, body: cmd.UnassignCoordinator, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.unassign_coordinator(user_id, body)))


@router.post("/{case_id}/consents", response_model=WriteResult, summary="Record signed consent (samtycke)")
def give_consent(case_id: UUID, body: cmd.GiveConsent, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.give_consent(body)))


@router.post("/{case_id}/consents/withdrawal", response_model=WriteResult, summary="Withdraw consent")
def withdraw_consent(case_id: UUID, body: cmd.WithdrawConsent, call: ClientCmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.withdraw_consent(body)))


@router.post("/{case_id}/worksheets", response_model=WriteResult, summary="Record a completed worksheet")
def worksheet(case_id: UUID, body: cmd.CompleteWorksheet, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.complete_worksheet(body)))


@router.post("/{case_id}/mapping-summary", response_model=WriteResult, summary="Summarise the mapping")
def summarise(case_id: UUID, body: cmd.SummariseMapping, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.summarise_mapping(body)))


@router.post("/{case_id}/phase", response_model=WriteResult, summary="Move between working and follow-up")
def change_phase(case_id: UUID, body: cmd.ChangePhase, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.change_phase(body)))


@router.post("/{case_id}/goals", response_model=WriteResult, summary="Set a goal")
def set_goal(case_id: UUID, body: cmd.SetGoal, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.set_goal(body)))


@router.post("/{case_id}/goals/{goal_id}/status", response_model=WriteResult)
def goal_status(case_id: UUID, goal_id: UUID, body: cmd.ChangeGoalStatus, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.change_goal_status(goal_id, body)))


@router.post("/{case_id}/resource-group/members", response_model=WriteResult, summary="Add a member")
def add_member(case_id: UUID, body: cmd.AddMember, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.add_member(body)))


@router.post("/{case_id}/resource-group/members/{member_id}/removal", response_model=WriteResult)
def remove_member(case_id: UUID, member_id: UUID, body: cmd.RemoveMember, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.remove_member(member_id, body)))


@router.post(
    "/{case_id}/resource-group/meetings", response_model=WriteResult, summary="Record a held meeting"
)
def meeting(case_id: UUID, body: cmd.HoldResourceGroupMeeting, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.hold_resource_group_meeting(body)))


@router.put(
    "/{case_id}/early-warning-plan", response_model=WriteResult, summary="Update the early warning plan"
)
def plan(case_id: UUID, body: cmd.UpdateEarlyWarningPlan, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.update_early_warning_plan(body)))


@router.post(
    "/{case_id}/early-warnings", response_model=WriteResult, summary="Trigger the early warning plan"
)
def trigger(case_id: UUID, body: cmd.TriggerEarlyWarning, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.trigger_early_warning(body)))


@router.post("/{case_id}/early-warnings/{warning_id}/resolution", response_model=WriteResult)
def resolve(case_id: UUID, warning_id: UUID, body: cmd.ResolveEarlyWarning, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.resolve_early_warning(warning_id, body)))


@router.post("/{case_id}/sips", response_model=WriteResult, summary="Decide a SIP version")
def decide_sip(case_id: UUID, body: cmd.DecideSip, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.decide_sip(body)))


@router.post(
    "/{case_id}/sips/current/confirmation",
    response_model=WriteResult,
    summary="The client confirms, in their own name, that they agree to the current SIP",
)
def confirm_sip(case_id: UUID, body: cmd.ConfirmSip, call: ClientCmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.confirm_sip(body)))


@router.post("/{case_id}/sips/current/actions/{action_id}/completion", response_model=WriteResult)
def complete_action(case_id: UUID, action_id: UUID, body: cmd.CompleteAction, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.complete_action(action_id, body)))


@router.post(
    "/{case_id}/contacts",
    response_model=WriteResult,
    summary="Record a contact with the client in the logbook (Loggboken)",
)
def record_contact(case_id: UUID, body: cmd.RecordClientContact, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.record_client_contact(body)))


@router.post(
    "/{case_id}/contact-period",
    response_model=WriteResult,
    summary="Set the contact period, which sets the contact cadence",
)
def set_contact_period(case_id: UUID, body: cmd.SetContactPeriod, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.set_contact_period(body)))


@router.post(
    "/{case_id}/corrections",
    response_model=WriteResult,
    summary="Correct an earlier entry, keeping the original",
    description="A worksheet, a goal, a resource group meeting held or a SIP action's completion,"
    " named by its own event's id (`corrects_event_id`, as the history lists it), as it should"
    " have read (`value`, whose `kind` is the entry's), with the reason. The entry's own event"
    " stays as stored; the overview shows the new value and the original (ADR 0018). A later"
    " correction names the same entry again and wins. 409 `entry_not_found`,"
    " `entry_not_correctable`, `entry_retracted`, `correction_kind_mismatch`, `case_closed`.",
)
def correct_entry(case_id: UUID, body: cmd.CorrectEntry, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.correct_entry(body)))


@router.post(
    "/{case_id}/retractions",
    response_model=WriteResult,
    summary="Retract an earlier entry, keeping the original",
    description="An entry that should not have been recorded (a worksheet, a goal, a resource group"
    " meeting held or a SIP action's completion), named by its own event's id, with the reason."
    " The entry's own event stays as stored; the overview shows it as retracted, and it counts no"
    " more (ADR 0018).",
)
def retract_entry(case_id: UUID, body: cmd.RetractEntry, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.retract_entry(body)))


@router.post("/{case_id}/closure", response_model=WriteResult, summary="Close the case")
def close(case_id: UUID, body: cmd.CloseCase, call: Cmd) -> Response:
    return respond(run(call, body, case_id, lambda c: c.close(body)))


def _fingerprint(method_and_path: str, body: BaseModel) -> str:
    """Same key, same request: method, path and the validated body."""
    material = method_and_path.encode() + b"\n" + body.model_dump_json().encode()
    return hashlib.sha256(material).hexdigest()
