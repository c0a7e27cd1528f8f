"""The meetings API: a case's meetings, coordinators' requests and calendar files (.ics).

- Same bearer tokens and RFC 9457 problem bodies as the other APIs. Reading needs the
  coordinator or manager role, writing the coordinator role; either way the caller's
  organisation must coordinate the case or be covered by its current consent (else 403,
  never 404 for a case that exists).
- Every POST needs ``Idempotency-Key`` (1–255 visible ASCII characters, no ``/``; missing:
  422, as the OpenAPI document says it is required). It is the person's (organisation and
  user id: hashed with them), and becomes the request id the domain derives the event id
  (and for a booking the meeting id) from, so a replay of the case stream decides the same
  ids.
- A retry is answered from the schedule's state, with ``Idempotency-Replayed: true`` and
  no new event: a booking whose meeting exists already (200, not 201); a reschedule to the
  time the meeting already has; a cancel of a client meeting already cancelled; a "held"
  of a meeting already held on that day. The key is not fingerprinted: reusing it with a
  different booking returns the first booking.
- The request ids of reschedule, cancel and held are namespaced by the operation and the
  meeting (and, for a reschedule, the meeting's sequence), so one key reused for another
  request can never make two events with one id.
- A coordinator's calendar feed is read with their token, or, by a calendar app (which
  cannot send one), with the signed link ``GET /v1/coordinators/{id}/calendar-link``
  gives them: ``…/calendar.ics?organisation=<org>&key=<HMAC of organisation and user id>``.
  The key is the credential; changing ``VSS_CALENDAR_LINK_KEY`` revokes every link.
- A coordinator is a person, (organisation, user id): the feed and the link take the
  organisation as ``?organisation=`` (default: the caller's), and only that person gets them.
- Read-your-writes: every request about a case takes ``?position=`` (the log position in a
  case API response) and waits, at most ``VSS_MEETINGS_WAIT_LIMIT`` seconds, until this
  service has applied the case stream through it; else 503 ``position_not_reached`` with
  ``Retry-After`` (see ``services.shared.http_position``). A case this service does not
  know is 503 ``case_not_yet_known`` with ``Retry-After`` while it has not applied the whole
  case stream, and 404 ``case_known`` once it has (or once the asked position is reached).
- Every read of a case's data, and every refusal (a missing role, an organisation the case
  does not cover, another person's calendar, an invalid calendar link), is access-logged;
  so is every answer to a request (book, reschedule, cancel, confirm, held; a replay too),
  which shows the meeting (``meeting_request``, granted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from icalendar import Calendar
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.meetings.application.service import CaseUnknown, MeetingsService, Requester
from services.meetings.domain.calendar import STOCKHOLM
from services.meetings.domain.meeting import Meeting, MeetingStatus
from services.meetings.domain.schedule import Decided, MeetingSchedule, ScheduleError
from services.shared.access import AccessRecorder, may_read, record_access, refusal
from services.shared.auth import TokenClaims, TokenService
from services.shared.http_app import deps_of, service_app
from services.shared.http_auth import bearer, verified_claims
from services.shared.http_position import (
    POSITION_HEADER,
    PositionQuery,
    WaitSlots,
    position_not_reached,
    wait_until,
)
from services.shared.ics import calendar_feed, meeting_ics
from services.shared.inputs import (
    WINDOW_DESCRIPTION,
    DateWindow,
    PersonOrganisation,
    PersonUserId,
    refuse_bad_input,
)
from services.shared.problems import (
    ProblemException,
    forbidden,
    problem_response,
    problem_responses,
)
from services.shared.signed_links import ANSWER_LINK_PRINCIPAL, verify_answer
from vss_contracts.meeting_events import Answer, AnswerVia, CancelReason, Invitee, MeetingKind, PlaceKind
from vss_contracts.types import Principal, ShortText

READ_ROLES = frozenset({"coordinator", "manager"})
WRITE_ROLE = "coordinator"
ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"
REPLAYED_HEADER = "Idempotency-Replayed"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x2e\x30-\x7e]{1,255}$")  # visible ASCII but "/"
_TITLES = {404: "Not found", 409: "Refused by the meeting schedule"}
_WINDOWED = (
    "Within a window around today: by default ten years back and five ahead"
    " (VSS_DATE_WINDOW_PAST_DAYS, VSS_DATE_WINDOW_FUTURE_DAYS); else 422, rule date_window"
)


# --------------------------------------------------------------------------------- models
class InviteeOut(BaseModel):
    name: str
    role: str
    organisation_id: str | None
    answer: Answer | None = Field(
        default=None, description="accepted, declined or tentative; None: no answer yet"
    )
    answered_via: AnswerVia | None = None
    answered_at: datetime | None = None


class MeetingOut(BaseModel):
    meeting_id: UUID
    case_id: UUID
    kind: MeetingKind
    starts_at: datetime
    ends_at: datetime
    status: MeetingStatus
    sequence: int
    invitees: list[InviteeOut]
    reason: str
    sip_version: int | None
    warning_id: UUID | None
    location: str | None
    place_kind: PlaceKind | None
    agenda: list[str] = Field(description="The agenda (*dagordning*), in order")
    proposed: bool = Field(
        description="Proposed by the schedule: nobody is invited until a coordinator confirms it"
    )
    held_on: date | None
    ics: str = Field(description="The meeting's invitation (or cancellation) as iCalendar")


class MeetingList(BaseModel):
    case_id: UUID
    items: list[MeetingOut]


class BookMeeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: Annotated[AwareDatetime, Field(description=_WINDOWED)]
    minutes: Annotated[int, Field(ge=15, le=480)] = 60
    location: ShortText | None = None
    kind: Literal["client_contact", "resource_group"] = Field(
        default="client_contact",
        description="A meeting with the client, or a resource group meeting"
        " (the whole group, the method's agenda)",
    )
    place_kind: PlaceKind | None = None


class ConfirmMeeting(BaseModel):
    """The time and place the coordinators agreed for a proposed meeting."""

    model_config = ConfigDict(extra="forbid")

    starts_at: Annotated[AwareDatetime, Field(description=_WINDOWED)]
    minutes: Annotated[int | None, Field(ge=15, le=480, description="Default: as proposed")] = None
    place_kind: PlaceKind
    location: ShortText | None = Field(
        default=None, description="The place as the calendar names it; default: the kind's name"
    )


class AnswerMeeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: Answer


class AnswerPage(BaseModel):
    """What an invitee is asked through their answer link."""

    meeting_id: UUID
    kind: MeetingKind
    starts_at: datetime
    ends_at: datetime
    status: MeetingStatus
    sequence: int
    location: str | None
    agenda: list[str]
    invitee: str = Field(description="The invitee's name")
    answer: Answer | None
    answers: list[Answer] = Field(description="The answers one may give")


class RescheduleMeeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: Annotated[AwareDatetime, Field(description=_WINDOWED)]
    reason: ShortText


class CancelMeeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[CancelReason, Field(description="Why (1–200 characters); shown on the meeting")]


class MarkHeld(BaseModel):
    model_config = ConfigDict(extra="forbid")

    held_on: Annotated[date, Field(description=_WINDOWED)]


def _ics_path(meeting: Meeting) -> str:
    return f"/v1/cases/{meeting.case_id}/meetings/{meeting.meeting_id}.ics"


def _out(meeting: Meeting) -> MeetingOut:
    return MeetingOut(
        meeting_id=meeting.meeting_id,
        case_id=meeting.case_id,
        kind=meeting.kind,
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        status=meeting.status,
        sequence=meeting.sequence,
        invitees=[_invitee_out(meeting, i) for i in meeting.invitees.values()],
        reason=meeting.reason,
        sip_version=meeting.sip_version,
        warning_id=meeting.warning_id,
        location=meeting.location,
        place_kind=meeting.place_kind,
        agenda=list(meeting.agenda),
        proposed=meeting.proposed,
        held_on=meeting.held_on,
        ics=_ics_path(meeting),
    )


def _invitee_out(meeting: Meeting, invitee: Invitee) -> InviteeOut:
    answered = meeting.answers.get(invitee.invitee_id)
    return InviteeOut(
        name=invitee.name,
        role=invitee.role.value,
        organisation_id=invitee.organisation.id if invitee.organisation else None,
        answer=answered.answer if answered else None,
        answered_via=answered.via if answered else None,
        answered_at=answered.at if answered else None,
    )


# --------------------------------------------------------------------------------- wiring
@dataclass(frozen=True, slots=True)
class FeedLinks:
    """Signed links to coordinators' calendar feeds, for calendar apps that send no token."""

    key: bytes
    base_url: str  # the meetings API as calendar apps reach it

    def signature(self, organisation_id: str, user_id: str) -> str:
        material = json.dumps(["calendar-feed", organisation_id, user_id]).encode()
        mac = hmac.new(self.key, material, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode()

    def url(self, organisation_id: str, user_id: str) -> str:
        base = self.base_url.rstrip("/")
        query = urlencode({"organisation": organisation_id, "key": self.signature(organisation_id, user_id)})
        return f"{base}/v1/coordinators/{quote(user_id, safe='')}/calendar.ics?{query}"

    def verify(self, organisation_id: str, user_id: str, key: str) -> bool:
        return hmac.compare_digest(self.signature(organisation_id, user_id).encode(), key.encode())


CALENDAR_LINK = "calendar_link"  # the principal of a feed read through a signed link


class CalendarLink(BaseModel):
    user_id: str
    organisation_id: str
    url: str
    note: str


@dataclass(frozen=True, slots=True)
class MeetingsApiDependencies:
    service: MeetingsService
    tokens: TokenService
    organiser: tuple[str, str]  # (name, email): the ORGANIZER of every .ics
    feed_links: FeedLinks
    access_log: AccessRecorder  # every read of a case's data, and every refusal
    window: DateWindow = field(default_factory=DateWindow)  # where the dates of a request may lie
    wait_limit: float = 5.0  # the longest wait for ?position= (seconds)
    max_waits: int = 32  # requests waiting for ?position= at once (one more: 503)
    # Whether the case stream's consumer found nothing left to apply at its last look.
    caught_up: Callable[[], bool] = field(default=lambda: True)
    # The invitees' answer links' key (ADR 0020); the notifications service signs with it.
    answer_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


router = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 403, 404, 409, 422, 503))


def create_app(deps: MeetingsApiDependencies) -> FastAPI:
    app = service_app(
        title="VSS meetings",
        description=(
            "Each case's meeting schedule (resource group, coordination and crisis meetings), "
            "coordinators' bookings and changes, and the meetings as iCalendar files and feeds. "
            + WINDOW_DESCRIPTION
        ),
        deps=deps,
        routers=[router],
    )

    app.state.waits = WaitSlots(deps.max_waits)

    @app.exception_handler(CaseUnknown)
    async def _unknown(request: Request, error: CaseUnknown) -> Response:
        # Not known here may be "not yet": the case stream lags the case API by a moment.
        if not getattr(request.state, "position_reached", False) and not deps.caught_up():
            return problem_response(
                request,
                503,
                "Service Unavailable",
                f"{error}, and the meetings service has not yet applied the whole case stream;"
                " retry, or pass ?position= from the case API's response",
                code="case_not_yet_known",
                headers={"Retry-After": "1"},
            )
        return problem_response(request, 404, _TITLES[404], str(error), code=error.rule, rule=error.rule)

    @app.exception_handler(ScheduleError)
    async def _refused(request: Request, error: ScheduleError) -> Response:
        title = _TITLES.get(error.status, "Refused")
        retry = {"Retry-After": "1"} if error.status == 503 else None  # a rebuild replaying
        return problem_response(
            request, error.status, title, str(error), code=error.rule, rule=error.rule, headers=retry
        )

    return app


def _deps(request: Request) -> MeetingsApiDependencies:
    return deps_of(request, MeetingsApiDependencies)


def _admit(request: Request, body: BaseModel) -> None:
    """422 for a date outside the window or a control character in a text of ``body``."""
    deps = _deps(request)
    today = deps.service.clock.now().astimezone(STOCKHOLM).date()
    refuse_bad_input(body, today=today, window=deps.window)


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> TokenClaims:
    return verified_claims(_deps(request).tokens, credentials)


Caller = Annotated[TokenClaims, Depends(caller)]


def _path_case(request: Request) -> str | None:
    value = request.path_params.get("case_id")
    return str(value) if value is not None else None


def _refuse(
    request: Request, claims: TokenClaims, resource: str, refused: ProblemException
) -> ProblemException:
    """The refusal, access-logged (with the case the path names, if any)."""
    record_access(_deps(request).access_log, claims, _path_case(request), resource, "denied", refused.detail)
    return refused


def reader(claims: Caller, request: Request) -> TokenClaims:
    if claims.is_client:
        return claims  # their own case only: decided per case by the one access rule
    if not claims.roles & READ_ROLES:
        raise _refuse(
            request,
            claims,
            "meetings",
            forbidden(f"reading meetings needs one of the roles {sorted(READ_ROLES)}", "role_required"),
        )
    return claims


Reader = Annotated[TokenClaims, Depends(reader)]


@dataclass(frozen=True, slots=True)
class WriteCall:
    """A coordinator's request: who asks, and the Idempotency-Key it is known by."""

    claims: TokenClaims
    key: str

    @property
    def requester(self) -> Requester:
        return Requester(
            user_id=self.claims.user_id,
            organisation_id=self.claims.organisation_id,
            principal=Principal(self.claims.principal),
        )


def write_call(
    claims: Caller,
    request: Request,
    idempotency_key: Annotated[
        str,
        Header(
            description='The request id (e.g. a UUID; 1–255 visible ASCII characters but "/", else 400);'
            " a retry with it returns the first outcome. Missing: 422",
            json_schema_extra={"pattern": "^[!-.0-~]{1,255}$"},
        ),
    ],
) -> WriteCall:
    if WRITE_ROLE not in claims.roles:
        raise _refuse(
            request,
            claims,
            "meeting_request",
            forbidden("booking and changing meetings needs the coordinator role", "role_required"),
        )
    if not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ProblemException(
            400,
            "Bad Idempotency-Key",
            'Idempotency-Key is 1–255 visible ASCII characters other than "/"',
            code="bad_header",
            field="Idempotency-Key",
            rule="idempotency_key_format",
        )
    return WriteCall(claims, _person_key(claims, idempotency_key))


def _person_key(claims: TokenClaims, idempotency_key: str) -> str:
    """The key as the person's (organisation, user id): two organisations' "anna" sending the
    same Idempotency-Key are two requests. Hashed, so the request ids built from it stay
    "/"-separated and of bounded length."""
    material = f"{claims.organisation_id}\x00{claims.user_id}\x00{idempotency_key}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


Write = Annotated[WriteCall, Depends(write_call)]


def _check_access(schedule: MeetingSchedule, claims: TokenClaims, today: date) -> None:
    """The one access rule: the case's own client, or an organisation holding a grant today."""
    state = schedule.state
    if may_read(claims, schedule.grants(), state.client_pin, today.isoformat()):
        return
    rule, detail = refusal(claims, state.case_id)
    raise forbidden(detail, rule)


def _visible(request: Request, case_id: UUID, claims: TokenClaims, resource: str) -> MeetingSchedule:
    """The case's schedule if the caller may read it; the read, or the refusal, is access-logged."""
    deps = _deps(request)
    schedule = deps.service.schedule(case_id)  # CaseUnknown: 404
    try:
        _check_access(schedule, claims, _today(deps))
    except ProblemException as refused:
        _log(deps, claims, case_id, resource, "denied", refused.detail)
        raise
    _log(deps, claims, case_id, resource, "granted")
    return schedule


def _today(deps: MeetingsApiDependencies) -> date:
    return deps.service.clock.now().astimezone(STOCKHOLM).date()


def _log(
    deps: MeetingsApiDependencies,
    claims: TokenClaims,
    case_id: UUID,
    resource: str,
    outcome: str,
    reason: str | None = None,
) -> None:
    record_access(deps.access_log, claims, str(case_id), resource, outcome, reason)


class _Replayed(Exception):
    """The request was answered before: the schedule holds its outcome already."""

    def __init__(self, meeting: Meeting) -> None:
        super().__init__(str(meeting.meeting_id))
        self.meeting = meeting


def _run(
    request: Request,
    case_id: UUID,
    call: WriteCall,
    decide: Callable[[MeetingSchedule], Decided | Meeting],
) -> tuple[Meeting, bool]:
    """Run one request under the store's lock; ``decide`` returns a meeting to replay it.

    The answer (the meeting: its invitees, their organisations and answers, the place, the
    agenda; or why the schedule refused it) is a read of the case's data: once it is decided,
    a replay as much as the first answer, it is access-logged as granted (``meeting_request``,
    a refusal with its rule) before it is given."""

    def checked(schedule: MeetingSchedule) -> Decided:
        try:
            _check_access(schedule, call.claims, _today(_deps(request)))
        except ProblemException as refused:
            _log(_deps(request), call.claims, case_id, "meeting_request", "denied", refused.detail)
            raise
        try:
            outcome = decide(schedule)
        except ScheduleError as refused:  # why names the meeting and its people: a read too
            _log(_deps(request), call.claims, case_id, "meeting_request", "granted", refused.rule)
            raise
        if isinstance(outcome, Meeting):
            raise _Replayed(outcome)  # nothing is stored: the request was decided before
        return outcome

    deps = _deps(request)
    try:
        _, meeting = deps.service.request(case_id, call.requester, checked)
    except _Replayed as replay:
        meeting, replayed = replay.meeting, True
    else:
        replayed = False
    _log(deps, call.claims, case_id, "meeting_request", "granted")
    return meeting, replayed


def _answer(response: Response, meeting: Meeting, replayed: bool) -> MeetingOut:
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return _out(meeting)


def _ics(content: bytes, request: Request | None = None) -> Response:
    response = Response(content=content, media_type=ICS_MEDIA_TYPE)
    reached = getattr(request.state, "reached_position", None) if request is not None else None
    if reached is not None:  # a Response returned as is does not carry the dependency's headers
        response.headers[POSITION_HEADER] = reached
    return response


_ICS_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/calendar": {}}}}


async def waited_position(
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    position: PositionQuery = None,
) -> int | None:
    """Waits for ``?position=`` (only with a valid token); 503 if not reached in time."""
    if position is None:
        return None
    deps = _deps(request)
    # In a thread: with an identity provider, a verification may fetch its JWKS.
    await anyio.to_thread.run_sync(verified_claims, deps.tokens, credentials)
    service = deps.service
    if not await wait_until(
        lambda: service.applied_log_position() >= position,
        limit=deps.wait_limit,
        slots=request.app.state.waits,
    ):
        short = await anyio.to_thread.run_sync(service.applied_log_position)
        raise position_not_reached(short, position, deps.wait_limit, "meetings service")
    request.state.position_reached = True
    reached = str(await anyio.to_thread.run_sync(service.applied_log_position))
    request.state.reached_position = reached  # for the answers that make their own Response
    response.headers[POSITION_HEADER] = reached
    return position


Position = Annotated[int | None, Depends(waited_position)]


# --------------------------------------------------------------------------------- routes
@router.get("/cases/{case_id}/meetings", response_model=MeetingList, tags=["meetings"])
def list_meetings(case_id: UUID, claims: Reader, request: Request, _: Position) -> MeetingList:
    """The case's meetings, earliest first (cancelled and held ones included)."""
    schedule = _visible(request, case_id, claims, "meetings")
    meetings = sorted(schedule.state.meetings.values(), key=lambda m: m.starts_at)
    return MeetingList(case_id=case_id, items=[_out(m) for m in meetings])


@router.post(
    "/cases/{case_id}/meetings",
    status_code=201,
    response_model=MeetingOut,
    tags=["meetings"],
    responses={200: {"model": MeetingOut, "description": "A retry: the meeting booked before"}},
)
def book_meeting(
    case_id: UUID, body: BookMeeting, call: Write, request: Request, response: Response, _: Position
) -> MeetingOut:
    """Book a meeting of the coordinator and the client (*samordningsmöte*) on a working day, or
    (``kind: resource_group``) a resource group meeting of the whole group with the method's
    agenda, e.g. in place of one cancelled."""
    _admit(request, body)

    def decide(schedule: MeetingSchedule) -> Decided | Meeting:
        booked = schedule.state.meetings.get(str(schedule._id(f"booked/{call.key}")))
        if booked is not None:
            return booked
        return schedule.book(
            call.key,
            starts_at=body.starts_at,
            minutes=body.minutes,
            user_id=call.claims.user_id,
            organisation_id=call.claims.organisation_id,
            location=body.location,
            kind=MeetingKind(body.kind),
            place_kind=body.place_kind,
        )

    meeting, replayed = _run(request, case_id, call, decide)
    if replayed:
        response.status_code = 200
    response.headers["Location"] = f"/v1/cases/{case_id}/meetings/{meeting.meeting_id}"
    return _answer(response, meeting, replayed)


@router.get(
    "/cases/{case_id}/meetings/{meeting_id}.ics",
    response_class=Response,
    responses=_ICS_RESPONSES,
    tags=["calendar"],
)
def meeting_calendar_file(
    case_id: UUID, meeting_id: UUID, claims: Reader, request: Request, _: Position
) -> Response:
    """The meeting as iCalendar: an invitation (REQUEST), or a CANCEL once it is cancelled."""
    deps = _deps(request)
    meeting = _visible(request, case_id, claims, "meeting_calendar").meeting(meeting_id)
    method: Literal["REQUEST", "CANCEL"] = (
        "CANCEL" if meeting.status is MeetingStatus.CANCELLED else "REQUEST"
    )
    return _ics(
        meeting_ics(meeting, method=method, organizer=deps.organiser, now=deps.service.clock.now()), request
    )


@router.get("/cases/{case_id}/meetings/{meeting_id}", response_model=MeetingOut, tags=["meetings"])
def get_meeting(case_id: UUID, meeting_id: UUID, claims: Reader, request: Request, _: Position) -> MeetingOut:
    return _out(_visible(request, case_id, claims, "meeting").meeting(meeting_id))


@router.post(
    "/cases/{case_id}/meetings/{meeting_id}/reschedule", response_model=MeetingOut, tags=["meetings"]
)
def reschedule_meeting(
    case_id: UUID,
    meeting_id: UUID,
    body: RescheduleMeeting,
    call: Write,
    request: Request,
    response: Response,
    _: Position,
) -> MeetingOut:
    """Move a meeting of any kind (a resource group meeting is moved, never cancelled); same UID."""
    _admit(request, body)

    def decide(schedule: MeetingSchedule) -> Decided | Meeting:
        meeting = schedule.meeting(meeting_id)
        if meeting.is_upcoming and meeting.starts_at == body.starts_at:
            return meeting  # already there (a retry): no new version of the invitation
        return schedule.reschedule(
            f"reschedule/{meeting_id}/{meeting.sequence}/{call.key}",
            meeting_id,
            starts_at=body.starts_at,
            user_id=call.claims.user_id,
            organisation_id=call.claims.organisation_id,
            reason=body.reason,
        )

    meeting, replayed = _run(request, case_id, call, decide)
    return _answer(response, meeting, replayed)


@router.post("/cases/{case_id}/meetings/{meeting_id}/cancel", response_model=MeetingOut, tags=["meetings"])
def cancel_meeting(
    case_id: UUID,
    meeting_id: UUID,
    body: CancelMeeting,
    call: Write,
    request: Request,
    response: Response,
    _: Position,
) -> MeetingOut:
    """Cancel a meeting of any kind with a reason (1–500 characters): everyone invited gets a
    CANCEL (same UID, a higher SEQUENCE). A cancelled resource group meeting is not replaced by
    the schedule: book the next one (``kind: resource_group``); the SIP's follow-up date stands."""
    _admit(request, body)

    def decide(schedule: MeetingSchedule) -> Decided | Meeting:
        meeting = schedule.meeting(meeting_id)
        if meeting.status is MeetingStatus.CANCELLED:
            return meeting
        return schedule.cancel(
            f"cancel/{meeting_id}/{call.key}",
            meeting_id,
            user_id=call.claims.user_id,
            organisation_id=call.claims.organisation_id,
            reason=body.reason,
        )

    meeting, replayed = _run(request, case_id, call, decide)
    return _answer(response, meeting, replayed)


@router.post("/cases/{case_id}/meetings/{meeting_id}/confirm", response_model=MeetingOut, tags=["meetings"])
def confirm_meeting(
    case_id: UUID,
    meeting_id: UUID,
    body: ConfirmMeeting,
    call: Write,
    request: Request,
    response: Response,
    _: Position,
) -> MeetingOut:
    """Confirm a proposed meeting's time and place (the first resource group meeting is
    proposed, *preliminär tid*): the invitations go out now, with place and agenda."""
    _admit(request, body)

    def decide(schedule: MeetingSchedule) -> Decided | Meeting:
        meeting = schedule.meeting(meeting_id)
        if not meeting.proposed and meeting.is_upcoming and meeting.starts_at == body.starts_at:
            return meeting  # confirmed so already (a retry)
        return schedule.confirm(
            f"confirm/{meeting_id}/{call.key}",
            meeting_id,
            starts_at=body.starts_at,
            minutes=body.minutes,
            place_kind=body.place_kind,
            location=body.location,
            user_id=call.claims.user_id,
            organisation_id=call.claims.organisation_id,
        )

    meeting, replayed = _run(request, case_id, call, decide)
    return _answer(response, meeting, replayed)


@router.post("/cases/{case_id}/meetings/{meeting_id}/held", response_model=MeetingOut, tags=["meetings"])
def mark_meeting_held(
    case_id: UUID,
    meeting_id: UUID,
    body: MarkHeld,
    call: Write,
    request: Request,
    response: Response,
    _: Position,
) -> MeetingOut:
    """Record that the meeting took place on ``held_on`` (not before the day it was booked for)."""
    _admit(request, body)

    def decide(schedule: MeetingSchedule) -> Decided | Meeting:
        meeting = schedule.meeting(meeting_id)
        if meeting.status is MeetingStatus.HELD and meeting.held_on == body.held_on:
            return meeting
        return schedule.mark_held(
            f"held/{meeting_id}/{call.key}",
            meeting_id,
            held_on=body.held_on,
            user_id=call.claims.user_id,
            organisation_id=call.claims.organisation_id,
        )

    meeting, replayed = _run(request, case_id, call, decide)
    return _answer(response, meeting, replayed)


@router.get(
    "/coordinators/{user_id}/calendar.ics",
    response_class=Response,
    responses=_ICS_RESPONSES,
    tags=["calendar"],
)
def coordinator_feed(
    user_id: PersonUserId,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    key: Annotated[
        str | None,
        Query(max_length=64, description="The signature of a calendar link (instead of a token)"),
    ] = None,
    organisation: PersonOrganisation = None,
) -> Response:
    """A coordinator's meetings in all their cases, as a subscribable feed: for that coordinator
    (the person: ``organisation`` and user id) only, with their token or the signed link
    ``/calendar-link`` gives them."""
    deps = _deps(request)
    if key is not None:
        # A calendar app: the reader is whoever holds the coordinator's link.
        link_org = organisation or ""
        reader = TokenClaims(user_id, link_org or "-", link_org or "-", CALENDAR_LINK, frozenset())
        if not link_org or not deps.feed_links.verify(link_org, user_id, key):
            raise _refuse(
                request,
                reader,
                "calendar_feed",
                forbidden(
                    "the calendar link's key is not valid (revoked or mistyped)", "invalid_calendar_link"
                ),
            )
        organisation = link_org
    else:
        reader = verified_claims(deps.tokens, credentials)
        organisation = _own_calendar(request, reader, organisation, user_id, "calendar_feed")
    meetings = deps.service.meetings_of_coordinator(user_id, organisation)
    for case_id in sorted({m.case_id for m in meetings}):
        _log(deps, reader, case_id, "calendar_feed", "granted")
    feed = calendar_feed(meetings, name="VSS möten", now=deps.service.clock.now(), organizer=deps.organiser)
    return _ics(feed)


def _own_calendar(
    request: Request, reader: TokenClaims, organisation: str | None, user_id: str, resource: str
) -> str:
    """The organisation of the calendar asked for, if it is the reader's own; else a logged 403."""
    if reader.is_client:
        raise _refuse(
            request, reader, resource, forbidden("a calendar feed is a coordinator's", "role_required")
        )
    organisation = organisation or reader.organisation_id
    if (organisation, user_id) != (reader.organisation_id, reader.user_id):
        raise _refuse(
            request,
            reader,
            resource,
            forbidden(
                f"the calendar of {user_id} at {organisation} is for that coordinator only",
                "not_own_calendar",
            ),
        )
    return organisation


@router.get("/coordinators/{user_id}/calendar-link", response_model=CalendarLink, tags=["calendar"])
def calendar_link(
    user_id: PersonUserId, claims: Caller, request: Request, organisation: PersonOrganisation = None
) -> CalendarLink:
    """The coordinator's own subscribable feed URL (for Outlook, Google, Apple calendars)."""
    organisation = _own_calendar(request, claims, organisation, user_id, "calendar_link")
    record_access(_deps(request).access_log, claims, None, "calendar_link", "granted")
    return CalendarLink(
        user_id=user_id,
        organisation_id=organisation,
        url=_deps(request).feed_links.url(organisation, user_id),
        note="Anyone with this link can read the calendar: keep it private. It stops working"
        " when the service's calendar link key is changed.",
    )


# --------------------------------------------------------------------- invitees' answers (OSA)
MAX_REPLY_BYTES = 64 * 1024
_PARTSTATS = {"ACCEPTED": Answer.ACCEPTED, "DECLINED": Answer.DECLINED, "TENTATIVE": Answer.TENTATIVE}

InviteeQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=160,
        pattern=r"^[^\x00-\x20\x7f]+$",  # checked before it names anyone in the access log
        description="The invitee id the answer link names (no spaces or control characters)",
    ),
]
SignatureQuery = Annotated[
    str | None,
    Query(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The answer link's signature"
    ),
]


def _link_reader(invitee_id: str, invitee: Invitee | None) -> TokenClaims:
    """The access log's reader of a request through an answer link: the invitee it names."""
    organisation = invitee.organisation.id if invitee and invitee.organisation else "-"
    return TokenClaims(invitee_id, organisation, organisation, ANSWER_LINK_PRINCIPAL, frozenset())


def _linked_invitee(
    request: Request, case_id: UUID, meeting_id: UUID, invitee_id: str | None, sig: str | None, resource: str
) -> tuple[MeetingSchedule, Meeting, Invitee]:
    """The schedule, meeting and invitee an answer link opens; a bad link is a logged 403."""
    deps = _deps(request)
    reader = _link_reader(invitee_id or "-", None)
    if not invitee_id or not sig or not verify_answer(deps.answer_key, case_id, meeting_id, invitee_id, sig):
        raise _refuse(
            request,
            reader,
            resource,
            forbidden(
                "the answer link's signature is not valid (revoked or mistyped)", "invalid_answer_link"
            ),
        )
    schedule = deps.service.schedule(case_id)
    meeting = schedule.meeting(meeting_id)
    invitee = meeting.invitees.get(invitee_id)
    if invitee is None:  # dropped from the meeting since: the link no longer opens it
        raise _refuse(
            request,
            reader,
            resource,
            forbidden("the answer link's invitee is no longer invited to this meeting", "invitee_of_meeting"),
        )
    if not schedule.covered(invitee, _today(deps)):
        # Asked at each opening, as plan links do: a consent that has ended since the
        # invitation (its end date passed, no event in between) closes the link too.
        raise _refuse(
            request,
            _link_reader(invitee_id, invitee),
            resource,
            forbidden("the consent in force no longer covers the answer link's invitee", "not_covered"),
        )
    _log(deps, _link_reader(invitee_id, invitee), case_id, resource, "granted")
    return schedule, meeting, invitee


def _answer_page(meeting: Meeting, invitee: Invitee) -> AnswerPage:
    answered = meeting.answers.get(invitee.invitee_id)
    return AnswerPage(
        meeting_id=meeting.meeting_id,
        kind=meeting.kind,
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        status=meeting.status,
        sequence=meeting.sequence,
        location=meeting.location,
        agenda=list(meeting.agenda),
        invitee=invitee.name,
        answer=answered.answer if answered else None,
        answers=list(Answer),
    )


def _record_answer(
    request: Request,
    case_id: UUID,
    meeting_id: UUID,
    invitee: Invitee,
    answer: Answer,
    via: AnswerVia,
    sequence: int | None,
) -> tuple[Meeting, bool]:
    """Record one invitee's answer (to ``sequence``, default: the invitation as it stands)."""
    deps = _deps(request)
    organisation = invitee.organisation.id if invitee.organisation else "-"
    requester = Requester(user_id=invitee.invitee_id, organisation_id=organisation, principal=Principal.OTHER)

    def decide(schedule: MeetingSchedule) -> Decided:
        meeting = schedule.meeting(meeting_id)
        asked = meeting.sequence if sequence is None else sequence
        current = meeting.answers.get(invitee.invitee_id)
        if current is not None and current.answer is answer and current.sequence == asked == meeting.sequence:
            raise _Replayed(meeting)  # the same answer again: nothing new to record
        return schedule.answer(
            # The schedule's version makes each answer's request id (and event id) its own.
            f"answer/{meeting_id}/{invitee.invitee_id}/{schedule.version}",
            meeting_id,
            invitee_id=invitee.invitee_id,
            answer=answer,
            via=via,
            sequence=asked,
            at=deps.service.clock.now(),
        )

    try:
        _, meeting = deps.service.request(case_id, requester, decide)
    except _Replayed as replay:
        return replay.meeting, True
    return meeting, False


@router.get("/cases/{case_id}/meetings/{meeting_id}/answer", response_model=AnswerPage, tags=["answers"])
def answer_link_page(
    case_id: UUID,
    meeting_id: UUID,
    request: Request,
    invitee: InviteeQuery = None,
    sig: SignatureQuery = None,
) -> AnswerPage:
    """What the invitee's answer link asks (no login: the signed link is the credential,
    as a plan link is); every read is access-logged under the invitee."""
    _, meeting, person = _linked_invitee(request, case_id, meeting_id, invitee, sig, "meeting_answer")
    return _answer_page(meeting, person)


@router.post("/cases/{case_id}/meetings/{meeting_id}/answer", response_model=AnswerPage, tags=["answers"])
def answer_through_link(
    case_id: UUID,
    meeting_id: UUID,
    body: AnswerMeeting,
    request: Request,
    response: Response,
    invitee: InviteeQuery = None,
    sig: SignatureQuery = None,
) -> AnswerPage:
    """Accept, decline or tentatively accept the invitation as it stands (*OSA*)."""
    _, _, person = _linked_invitee(request, case_id, meeting_id, invitee, sig, "meeting_answer")
    meeting, replayed = _record_answer(
        request, case_id, meeting_id, person, body.answer, AnswerVia.LINK, None
    )
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return _answer_page(meeting, person)


def _bad_reply(detail: str, rule: str) -> ProblemException:
    return ProblemException(
        422, "Not an iCalendar REPLY to this meeting", detail, code=rule, field="body", rule=rule
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """What an iTIP REPLY (RFC 5546 3.2.3) says: who answers what, to which version."""

    uid: str
    email: str
    answer: Answer
    sequence: int


def parse_reply(content: bytes) -> Reply:
    """The one VEVENT of a METHOD:REPLY, parsed with the icalendar library; 422 naming the rule."""
    try:
        calendar = Calendar.from_ical(content)
    except (ValueError, IndexError, KeyError, TypeError) as error:  # the parser's ways of refusing
        raise _bad_reply(f"the body is not iCalendar: {error}", "icalendar") from None
    if str(calendar.get("METHOD", "")).upper() != "REPLY":
        raise _bad_reply("the calendar's METHOD must be REPLY (RFC 5546 3.2.3)", "method_reply")
    events = calendar.walk("VEVENT")
    if len(events) != 1:
        raise _bad_reply("a REPLY holds exactly one VEVENT", "one_vevent")
    event = events[0]
    attendees = event.get("ATTENDEE")
    if attendees is None or isinstance(attendees, list):
        raise _bad_reply("a REPLY names exactly one ATTENDEE: the one answering", "one_attendee")
    address = str(attendees)
    if not address.lower().startswith("mailto:"):
        raise _bad_reply("the ATTENDEE must be a mailto: address", "attendee_mailto")
    partstat = str(attendees.params.get("PARTSTAT", "")).upper()
    if partstat not in _PARTSTATS:
        raise _bad_reply(
            f"PARTSTAT must be one of {', '.join(_PARTSTATS)}, not {partstat or 'missing'}", "partstat"
        )
    try:
        sequence = int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        raise _bad_reply("SEQUENCE must be a whole number", "sequence") from None
    if not 0 <= sequence <= 1_000_000:
        raise _bad_reply("SEQUENCE must be between 0 and 1000000", "sequence")
    return Reply(
        uid=str(event.get("UID", "")),
        email=address[len("mailto:") :].strip().lower(),
        answer=_PARTSTATS[partstat],
        sequence=sequence,
    )


_REPLY_BODY = {
    "required": True,
    "content": {"text/calendar": {"schema": {"type": "string", "maxLength": MAX_REPLY_BYTES}}},
}


@router.post(
    "/cases/{case_id}/meetings/{meeting_id}/reply",
    response_model=MeetingOut,
    tags=["answers"],
    openapi_extra={"requestBody": _REPLY_BODY},
    responses=problem_responses(413, 415),
)
async def reply_from_calendar(
    case_id: UUID,
    meeting_id: UUID,
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    invitee: InviteeQuery = None,
    sig: SignatureQuery = None,
) -> MeetingOut:
    """An invitee's calendar answer, an iTIP REPLY (RFC 5546) as ``text/calendar``.

    Authenticated either by the invitee's answer key (``?invitee=&sig=`` of their answer
    link: the ATTENDEE must be that invitee's address), or by a coordinator's token
    forwarding a reply that reached them (the ATTENDEE is matched to the invitees by
    address). The UID must be the meeting's; a REPLY to an older SEQUENCE, or from an
    address not invited, is refused (409, 422)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "text/calendar":
        raise ProblemException(
            415,
            "Unsupported Media Type",
            "send the REPLY as text/calendar",
            code="media_type",
            rule="text_calendar",
        )
    content = await request.body()
    if len(content) > MAX_REPLY_BYTES:
        raise ProblemException(
            413,
            "Content Too Large",
            f"a REPLY is at most {MAX_REPLY_BYTES} bytes",
            code="too_large",
            rule="reply_size",
        )
    return await anyio.to_thread.run_sync(
        _reply, request, response, case_id, meeting_id, content, credentials, invitee, sig
    )


def _reply(
    request: Request,
    response: Response,
    case_id: UUID,
    meeting_id: UUID,
    content: bytes,
    credentials: HTTPAuthorizationCredentials | None,
    invitee_id: str | None,
    sig: str | None,
) -> MeetingOut:
    deps = _deps(request)
    if invitee_id is not None or sig is not None:
        _, meeting, person = _linked_invitee(request, case_id, meeting_id, invitee_id, sig, "meeting_reply")
        linked: Invitee | None = person
    else:
        claims = verified_claims(deps.tokens, credentials)  # 401 without either
        if WRITE_ROLE not in claims.roles:
            raise _refuse(
                request,
                claims,
                "meeting_reply",
                forbidden("forwarding a reply needs the coordinator role", "role_required"),
            )
        meeting = _visible(request, case_id, claims, "meeting_reply").meeting(meeting_id)
        linked = None
    reply = parse_reply(content)
    if reply.uid != meeting.uid:
        raise _bad_reply(f"the REPLY's UID {reply.uid!r} is not this meeting's ({meeting.uid})", "reply_uid")
    by_address = [i for i in meeting.invitees.values() if i.email and str(i.email).lower() == reply.email]
    if linked is not None:
        if linked not in by_address:
            raise _bad_reply(
                "the ATTENDEE is not the address the answer link was sent to", "attendee_of_link"
            )
        answering = linked
    elif by_address:
        answering = by_address[0]  # one address shared by two invitees (a family's) answers for the first
    else:
        raise _bad_reply("the ATTENDEE is not invited to this meeting", "attendee_invited")
    meeting, replayed = _record_answer(
        request, case_id, meeting_id, answering, reply.answer, AnswerVia.ICALENDAR, reply.sequence
    )
    return _answer(response, meeting, replayed)
