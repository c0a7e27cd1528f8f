"""The query API: read models over HTTP, with access control, access logging and read-your-writes.

- ``?position=<log position>`` (from a command's response) makes a query wait, at most
  ``VSS_QUERY_WAIT_LIMIT`` seconds, until the read models reflect that position (else
  503). Every response says which position it reflects (``position`` and the
  ``Vss-Log-Position`` header). A wait needs a valid token, waits on the event loop (not
  in a worker thread that ordinary reads need) and at most ``VSS_QUERY_MAX_WAITS`` wait at
  once: one more is a 503 with ``Retry-After``.
- Same bearer tokens as the case service. Denials are 403 problems and are recorded
  in the access log, as is every read of a case's data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from services.projections.application.ports import AccessLog, NoReadModels, Position, ServedReadModels
from services.projections.application.queries import (
    AccessDenied,
    CaseNotFound,
    Queries,
    QueryPolicy,
    Reader,
)
from services.projections.domain.statistics import Level, Period
from services.projections.entrypoints import pages, plan_links
from services.shared.auth import TokenService
from services.shared.http_app import deps_of, service_app
from services.shared.http_auth import bearer, verified_claims
from services.shared.http_position import (
    MAX_POSITION,
    POSITION_HEADER,
    PositionQuery,
    WaitSlots,
    position_not_reached,
    wait_until,
)
from services.shared.inputs import (
    ORGANISATION_ID_PATTERN,
    USER_ID_PATTERN,
    PersonOrganisation,
    PersonUserId,
)
from services.shared.problems import (
    ProblemException,
    problem_response,
    problem_responses,
)
from vss_contracts.types import PracticeRule

MAX_CURSOR = MAX_POSITION  # versions and record numbers fit in 64 bits, as log positions do
MAX_STATISTICS_MONTHS = 120  # a statistics period is at most ten years
MONTH = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"  # YYYY-MM in the years 2000–2099


# ------------------------------------------------------------------------ response models
class ReadPosition(BaseModel):
    log_position: int
    stream_sequence: int
    generation: str


class Overview(BaseModel):
    position: ReadPosition
    case: dict[str, Any]


class CaseSummary(BaseModel):
    case_id: UUID
    client_name: str
    status: Literal["active", "closed"]
    phase: str
    municipality: dict[str, str]
    coordinators: list[dict[str, str]]
    next_follow_up_on: date | None
    follow_up_overdue: bool
    overdue_actions: int
    open_early_warnings: int
    version: int


class CasePage(BaseModel):
    position: ReadPosition
    items: list[CaseSummary]
    next_after: str | None


class JournalEntry(BaseModel):
    version: int
    log_position: int
    event_id: UUID
    type: str
    time: str
    actor_id: str
    actor_organisation: str
    actor_principal: str
    summary: str
    verified: bool
    corrected_by: list[UUID] = Field(
        default_factory=list, description="The events that corrected this entry, oldest first (ADR 0018)"
    )
    retracted_by: UUID | None = Field(default=None, description="The event that retracted this entry")


class Recipient(BaseModel):
    recipient_id: str
    name: str | None
    role: str | None  # client | coordinator | relative | professional | plan_contact | duty
    organisation_id: str | None
    user_id: str | None


class DeliveryEntry(BaseModel):
    """One event of the case's delivery record: who was told what, when, on which channel."""

    record_version: int = Field(description="Its place in the case's delivery record: 1, 2, 3 …")
    event_id: UUID
    type: str = Field(description="e.g. se.vss.notifications.NotificationSent.v1")
    status: str = Field(description="sent | failed | acknowledged | escalated")
    time: str = Field(description="When the notifications service recorded it")
    at: str = Field(description="When it happened: sent, failed, acknowledged or escalated")
    delivery_key: str | None
    recipient: Recipient | None = Field(description="None for an escalation")
    channel: str | None = Field(description="email | webhook | sms")
    template: str | None = Field(description="What kind of message, e.g. meeting_invitation")
    cause_event_id: str | None = Field(description="The case or meeting event the message was about")
    cause_event_type: str | None
    urgent: bool
    warning_id: str | None
    attempts: int | None
    message_id: str | None = Field(description="The Message-ID (e-mail) or X-VSS-Delivery (webhook) sent")
    reason: str | None = Field(description="Why a message failed")
    details: dict[str, Any] = Field(
        description="failed: permanent; escalated: triggered_at, organisation_ids, unacknowledged"
    )
    summary: str
    verified: bool = Field(description="It continues the case's delivery-record hash chain")


class JournalPage(BaseModel):
    position: ReadPosition
    case_id: UUID
    chain_verifies: bool
    items: list[JournalEntry]
    next_after_version: int | None
    deliveries: list[DeliveryEntry] = Field(
        description="The case's delivery record (stream VSS_NOTIFICATIONS), paged on its own"
        " with ?after_delivery= (record_version)"
    )
    deliveries_verify: bool
    next_after_delivery: int | None


class Caseload(BaseModel):
    position: ReadPosition
    user_id: str
    organisation_id: str
    active_cases: int
    by_phase: dict[str, int]
    follow_ups_due: int
    follow_ups_overdue: int
    due_within_days: int
    limit: int
    over_limit: bool
    cases: list[CaseSummary]


class OverdueList(BaseModel):
    position: ReadPosition
    organisation_id: str
    as_of: date
    follow_ups: list[dict[str, Any]]
    actions: list[dict[str, Any]]


class AccessEntry(BaseModel):
    seq: int
    record_id: str
    at: str
    user_id: str
    organisation_id: str
    roles: list[str]
    case_id: str | None
    read: str
    outcome: Literal["granted", "denied"]
    reason: str | None
    principal: str | None = Field(description="The reader's principal; None in records made before 2026-12")


class AccessPage(BaseModel):
    items: list[AccessEntry]
    next_after: int | None


class Statistics(BaseModel):
    position: ReadPosition
    level: str
    from_month: str
    to_month: str
    minimum_count: int
    groups: list[dict[str, Any]] = Field(
        description="One entry per municipality, association or region (`key`): `months` (active,"
        " opened, closed), `deviations` (count, by_rule), `consent_to_first_sip` (cases, median_days,"
        " lower_quartile_days, upper_quartile_days), `follow_ups` (due, within_three_months,"
        " not_within_three_months, share_within_three_months), `early_warnings`, `change_rating`"
        " (with `by_quarter`: quarter, cases, mean_total), `everyday_functioning` (cases_assessed,"
        " cases_reassessed), `method_fidelity` (joint_steps: held, with_every_coordinator,"
        " without_every_coordinator, share_with_every_coordinator; consent_to_mapping_summary;"
        " follow_ups_met_by_meeting_or_sip: due, met_within_three_months,"
        " not_met_within_three_months, share_met_within_three_months), and `by_age_group`"
        " (`adults`, `children_and_young_people`, and `unknown` while facts stored before the age"
        " group was kept remain) with the same figures. `null`: suppressed (fewer than"
        " `minimum_count` cases, or a cell that would give a suppressed one away: secondary"
        " suppression). Definitions: docs/operations.md and the statistics module."
    )


# -------------------------------------------------------------------------------- wiring
@dataclass(frozen=True, slots=True)
class QueryDependencies:
    served: ServedReadModels
    access_log: AccessLog
    tokens: TokenService
    today: Callable[[], date]
    wait_limit: float
    policy: QueryPolicy
    association_of: Callable[[str], str | None]
    max_waits: int = 32
    case_api: str = "http://127.0.0.1:8000"  # where the client's pages send the client's commands
    page_key: bytes = b""  # the client pages' form tokens; empty: a key of this process alone
    plan_link_key: bytes | None = None  # the plan links' key (ADR 0016); None: plan links refused


router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 404, 422, 503))


def create_app(deps: QueryDependencies) -> FastAPI:
    app = service_app(
        title="VSS query API",
        description=(
            "Read models of the coordination of care and support: case overviews, journals, caseloads, "
            "overdue lists and statistics. Every read of a case's data is recorded in the access log."
        ),
        deps=deps,
        routers=[router, pages.pages, plan_links.router],
    )
    app.state.waits = WaitSlots(deps.max_waits)
    app.add_exception_handler(pages.NotSignedIn, pages.not_signed_in)
    app.add_exception_handler(pages.BadForm, pages.bad_form)

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, error: AccessDenied) -> Response:
        return problem_response(request, 403, "Forbidden", error.detail, code=error.rule, rule=error.rule)

    return app


def _deps(request: Request) -> QueryDependencies:
    return deps_of(request, QueryDependencies)


def current_reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Reader:
    claims = verified_claims(_deps(request).tokens, credentials)
    return Reader(claims.user_id, claims.organisation_id, claims.roles, claims.principal)


@dataclass(frozen=True, slots=True)
class Consistent:
    """The read models at (at least) the asked position, and the use cases over them."""

    queries: Queries
    position: ReadPosition


async def waited_position(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    position: PositionQuery = None,
) -> int:
    """Waits for ``?position=``, only with a valid token (see ``services.shared.http_position``).

    A wait that slept in a worker thread held one of the pool's 40 for up to the wait limit:
    200 waits (no token needed then) pushed an ordinary read to 23 s.
    """
    if position is None:
        return 0
    deps = _deps(request)
    # In a thread: with an identity provider, a verification may fetch its JWKS.
    await anyio.to_thread.run_sync(verified_claims, deps.tokens, credentials)

    def reached() -> bool:
        try:
            return deps.served.wait_for(position, 0.0)[2]
        except NoReadModels:
            return True  # nothing to wait for: consistent() answers 503 no_read_models

    await wait_until(reached, limit=deps.wait_limit, slots=request.app.state.waits)
    return position


def consistent(
    request: Request,
    response: Response,
    position: Annotated[int, Depends(waited_position)],
) -> Consistent:
    deps = _deps(request)
    try:
        models, reached, ok = deps.served.wait_for(position, 0.0)  # waited for already
    except NoReadModels as error:
        raise ProblemException(503, "Service Unavailable", str(error), code="no_read_models") from None
    if not ok:
        raise position_not_reached(reached.log_position, position, deps.wait_limit, "read models")
    response.headers[POSITION_HEADER] = str(reached.log_position)
    generation = models.generation
    return Consistent(
        Queries(models, deps.access_log, deps.today, deps.policy),
        _position(reached, generation),
    )


def _position(position: Position, generation: str) -> ReadPosition:
    return ReadPosition(
        log_position=position.log_position, stream_sequence=position.stream_sequence, generation=generation
    )


ReaderDep = Annotated[Reader, Depends(current_reader)]
ConsistentDep = Annotated[Consistent, Depends(consistent)]


def _not_found(error: CaseNotFound, at: ReadPosition) -> ProblemException:
    return ProblemException(
        404,
        "Not Found",
        f"no case {error.case_id} at log position {at.log_position}"
        " (name ?position= to wait for a recent command)",
        code="case_not_found",
    )


# -------------------------------------------------------------------------------- routes
@router.get("/cases", response_model=CasePage, tags=["cases"])
def list_cases(
    reader: ReaderDep,
    at: ConsistentDep,
    coordinator: Annotated[
        str | None,
        Query(
            max_length=120,
            pattern=USER_ID_PATTERN,
            description="Cases this coordinator (a user id) coordinates, with coordinator_organisation",
        ),
    ] = None,
    coordinator_organisation: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=ORGANISATION_ID_PATTERN,
            description="The coordinator's organisation (a user id alone is no person); default: yours",
        ),
    ] = None,
    phase: Literal["mapping", "planning", "working", "follow_up", "closed"] | None = None,
    municipality: Annotated[str | None, Query(pattern=r"^\d{4}$", description="Municipality code")] = None,
    overdue: bool | None = None,
    after: Annotated[UUID | None, Query(description="Page on: the last case_id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    items = at.queries.cases(
        reader,
        coordinator=coordinator,
        coordinator_organisation=coordinator_organisation,
        phase=phase,
        municipality=municipality,
        overdue=overdue,
        after=str(after) if after else None,
        limit=limit,
    )
    return {
        "position": at.position,
        "items": items,
        "next_after": items[-1]["case_id"] if len(items) == limit else None,
    }


class MyCases(BaseModel):
    position: ReadPosition
    items: list[CaseSummary]


@router.get(
    "/me/cases",
    response_model=MyCases,
    tags=["client"],
    summary="A signed-in client's own cases (active and closed); 403 for anyone else",
)
def my_cases(reader: ReaderDep, at: ConsistentDep) -> dict[str, Any]:
    return {"position": at.position, "items": at.queries.my_cases(reader)}


@router.get("/cases/{case_id}", response_model=Overview, tags=["cases"])
def case_overview(case_id: UUID, reader: ReaderDep, at: ConsistentDep) -> dict[str, Any]:
    try:
        return {"position": at.position, "case": at.queries.overview(reader, str(case_id))}
    except CaseNotFound as error:
        raise _not_found(error, at.position) from None


@router.get("/cases/{case_id}/journal", response_model=JournalPage, tags=["cases"])
def case_journal(
    case_id: UUID,
    reader: ReaderDep,
    at: ConsistentDep,
    after_version: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most items, and most deliveries")] = 100,
    after_delivery: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_CURSOR,
            description="Page the deliveries on: the last record_version of the previous page",
        ),
    ] = 0,
) -> dict[str, Any]:
    """The case's events (``items``, in version order) and its delivery record (``deliveries``:
    every message sent or failed, acknowledged or escalated, in the order the notifications
    service recorded them). The two lists are paged separately. One read, one access-log
    record (``journal``)."""
    try:
        journal = at.queries.journal(reader, str(case_id), after_version, limit, after_delivery)
    except CaseNotFound as error:
        raise _not_found(error, at.position) from None
    items, deliveries = journal.items, journal.deliveries
    return {
        "position": at.position,
        "case_id": case_id,
        "chain_verifies": all(item["verified"] for item in items),
        "items": items,
        "next_after_version": items[-1]["version"] if len(items) == limit else None,
        "deliveries": deliveries,
        "deliveries_verify": all(d["verified"] for d in deliveries),
        "next_after_delivery": deliveries[-1]["record_version"] if len(deliveries) == limit else None,
    }


@router.get("/cases/{case_id}/access-log", response_model=AccessPage, tags=["access log"])
def case_access_log(
    case_id: UUID,
    reader: ReaderDep,
    at: ConsistentDep,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Who read this case's data, and who was refused (the client's right to know)."""
    try:
        items = at.queries.case_access_log(reader, str(case_id), after, limit)
    except CaseNotFound as error:
        raise _not_found(error, at.position) from None
    return {"items": items, "next_after": items[-1]["seq"] if len(items) == limit else None}


@router.get("/users/{user_id}/access-log", response_model=AccessPage, tags=["access log"])
def user_access_history(
    user_id: PersonUserId,
    reader: ReaderDep,
    at: ConsistentDep,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    organisation: PersonOrganisation = None,
) -> dict[str, Any]:
    """What a person read (log review): your own, or any user's of your organisation as a manager."""
    items = at.queries.user_access_history(reader, user_id, after, limit, organisation)
    return {"items": items, "next_after": items[-1]["seq"] if len(items) == limit else None}


@router.get("/coordinators/{user_id}/caseload", response_model=Caseload, tags=["caseloads"])
def caseload(
    user_id: PersonUserId, reader: ReaderDep, at: ConsistentDep, organisation: PersonOrganisation = None
) -> dict[str, Any]:
    """A coordinator's active cases: the person (organisation, user id); yours, or as a manager
    those of a coordinator of your organisation."""
    return {"position": at.position, **at.queries.caseload(reader, user_id, organisation)}


@router.get("/overdue", response_model=OverdueList, tags=["caseloads"])
def overdue(
    reader: ReaderDep, at: ConsistentDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    """Your organisation's follow-ups and SIP actions past their date."""
    return {"position": at.position, **at.queries.overdue(reader, limit)}


def _month(value: str, name: str) -> date:
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise ProblemException(
            422,
            "Unprocessable Content",
            f"{name} must be a month, YYYY-MM, not {value!r}",
            code="invalid_request",
            errors=[{"field": f"query.{name}", "rule": "month", "message": "YYYY-MM"}],
        ) from None


@router.get(
    "/statistics",
    response_model=Statistics,
    tags=["statistics"],
    responses={200: {"content": {"text/csv": {}}}},
)
def statistics(
    request: Request,
    reader: ReaderDep,
    at: ConsistentDep,
    level: Level = "municipality",
    from_month: Annotated[
        str | None,
        Query(
            alias="from",
            pattern=MONTH,
            description="First month, YYYY-MM (2000–2099); the period is at most ten years."
            " Default: twelve months before to",
        ),
    ] = None,
    to_month: Annotated[
        str | None,
        Query(alias="to", pattern=MONTH, description="Last month, YYYY-MM (2000–2099); default: this month"),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    deps = _deps(request)
    today = deps.today()
    last = _month(to_month, "to") if to_month else date(today.year, today.month, 1)
    first = _month(from_month, "from") if from_month else date(last.year - 1, last.month, 1)
    if first > last:
        raise ProblemException(
            422,
            "Unprocessable Content",
            f"from ({first:%Y-%m}) is after to ({last:%Y-%m})",
            code="invalid_request",
            errors=[{"field": "query.from", "rule": "from_not_after_to", "message": ""}],
        )
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    if months > MAX_STATISTICS_MONTHS:
        raise ProblemException(
            422,
            "Unprocessable Content",
            f"the period from {first:%Y-%m} to {last:%Y-%m} is {months} months, more than ten years",
            code="invalid_request",
            errors=[
                {
                    "field": "query.from",
                    "rule": "period_at_most_ten_years",
                    "message": f"at most {MAX_STATISTICS_MONTHS} months",
                }
            ],
        )
    groups = at.queries.statistics(reader, level, Period(first, last), deps.association_of)
    if format == "csv":
        return Response(_csv(groups), media_type="text/csv; charset=utf-8")
    return {
        "position": at.position,
        "level": level,
        "from_month": f"{first:%Y-%m}",
        "to_month": f"{last:%Y-%m}",
        "minimum_count": 5,
        "groups": groups,
    }


def _csv(groups: list[dict[str, Any]]) -> str:
    """One row per group and month; the period figures repeated on each row of the group."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "level",
            "key",
            "month",
            "active",
            "opened",
            "closed",
            "consent_to_first_sip_cases",
            "consent_to_first_sip_median_days",
            "follow_ups_due",
            "follow_ups_within_three_months",
            "share_within_three_months",
            "early_warnings",
            "case_years",
            "early_warnings_per_case_year",
            "cases_rated_twice",
            "mean_first_rating",
            "mean_latest_rating",
            "improved",
            "worsened",
            "deviations",
            *(f"deviations_{rule}" for rule in sorted(PracticeRule)),
            *FIDELITY_COLUMNS,
            "age_group",
        ]
    )

    for whole in groups:
        scopes = [("all", whole), *whole.get("by_age_group", {}).items()]
        for age_group, figures in scopes:
            _csv_rows(writer, {**figures, "level": whole["level"], "key": whole["key"]}, age_group)
    return out.getvalue()


FIDELITY_COLUMNS = (
    "consent_to_first_sip_lower_quartile_days",
    "consent_to_first_sip_upper_quartile_days",
    "joint_steps_held",
    "joint_steps_with_every_coordinator",
    "share_joint_steps_with_every_coordinator",
    "consent_to_mapping_summary_cases",
    "consent_to_mapping_summary_median_days",
    "follow_ups_by_meeting_or_sip_due",
    "follow_ups_by_meeting_or_sip_met",
    "share_follow_ups_by_meeting_or_sip_met",
    "everyday_functioning_cases_assessed",
    "everyday_functioning_cases_reassessed",
)


def _csv_rows(writer: Any, group: dict[str, Any], age_group: str) -> None:
    """One group's (or one of its age groups') rows: one a month."""

    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    fidelity = group["method_fidelity"]
    steps, summary, met = (
        fidelity["joint_steps"],
        fidelity["consent_to_mapping_summary"],
        fidelity["follow_ups_met_by_meeting_or_sip"],
    )
    extra = (
        group["consent_to_first_sip"]["lower_quartile_days"],
        group["consent_to_first_sip"]["upper_quartile_days"],
        steps["held"],
        steps["with_every_coordinator"],
        steps["share_with_every_coordinator"],
        summary["cases"],
        summary["median_days"],
        met["due"],
        met["met_within_three_months"],
        met["share_met_within_three_months"],
        group["everyday_functioning"]["cases_assessed"],
        group["everyday_functioning"]["cases_reassessed"],
    )
    sip, follow, warn, rating = (
        group["consent_to_first_sip"],
        group["follow_ups"],
        group["early_warnings"],
        group["change_rating"],
    )
    for month in group["months"]:
        writer.writerow(
            [
                cell(v)
                for v in (
                    group["level"],
                    group["key"],
                    month["month"],
                    month["active"],
                    month["opened"],
                    month["closed"],
                    sip["cases"],
                    sip["median_days"],
                    follow["due"],
                    follow["within_three_months"],
                    follow["share_within_three_months"],
                    warn["count"],
                    warn["case_years"],
                    warn["per_case_year"],
                    rating["cases_rated_twice"],
                    rating["mean_first_total"],
                    rating["mean_latest_total"],
                    rating["improved"],
                    rating["worsened"],
                    group["deviations"]["count"],
                    *(group["deviations"]["by_rule"][rule] for rule in sorted(PracticeRule)),
                    *extra,
                    age_group,
                )
            ]
        )


@router.get("/position", response_model=ReadPosition, tags=["operations"])
def position(reader: ReaderDep, at: ConsistentDep) -> ReadPosition:
    """The position the read models reflect (a token is needed: with ``?position=`` it waits)."""
    return at.position
