"""The client's pages (*Min plan*), served by the query API: server-rendered HTML in Swedish.

A client signs in (the identity provider's token, kept in an HttpOnly, SameSite=Strict
cookie scoped to these pages; a bearer header works too), lists their cases, reads the whole
plan of one (the SIP, earlier versions, the mapping checklist, the early-warning plan, the
coming meetings with their ``.ics``, who has read their data), prints the SIP and the plan
as PDFs, and withdraws their consent after a confirmation step. Every page decides by the
one access rule and is access-logged (``Queries``); only a client's token opens them: staff
read the same data through the API. The withdrawal is the client's own command: the page
sends it to the case API with the client's token, so the case records the client as its actor.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import parse_qs
from uuid import UUID

import anyio
import httpx
import jwt
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from services.projections.application.ports import NoReadModels
from services.projections.application.queries import AccessDenied, CaseNotFound, Queries, Reader
from services.projections.domain.meetings import meeting_calendar
from services.projections.presentation import (
    CSRF_FIELD,
    WITHDRAW_FIELD,
    MyPlanLinks,
    NotAWithdrawChoice,
    ReaderId,
    early_warning_plan_pdf,
    render_my_plan_page,
    render_withdraw_confirmation_page,
    sip_pdf,
    withdraw_choice,
)
from services.projections.presentation.pages import render_page
from services.shared.access import CLIENT_PRINCIPAL, record_access
from services.shared.auth import InvalidToken, KeysUnavailable, TokenClaims
from services.shared.http_auth import bearer
from services.shared.http_position import MAX_POSITION, wait_until

if TYPE_CHECKING:
    from services.projections.entrypoints.http import QueryDependencies

SESSION_COOKIE = "vss_min_plan"
BASE = "/min-plan"
MAX_FORM_BYTES = 16_384  # a sign-in token or a withdrawal form; anything longer is refused
NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # The pages are plain HTML with one inline <style>: nothing else loads, nobody frames them.
    "Content-Security-Policy": "frame-ancestors 'none'; default-src 'self'; style-src 'self' 'unsafe-inline'",
}
MY_PLAN = "Tillbaka till Min plan"

# Every answer is a page (HTML), a refusal too; the routes say which they give.
_PAGE_STATUSES = {
    303: "To the sign-in page, or on after a sign-in or a withdrawal",
    400: "A form that does not parse",
    401: "Not signed in, or a token that does not verify",
    403: "Not the client's case, a staff token, or a form token that does not match",
    404: "No such case or meeting",
    409: "The case refused the withdrawal",
    413: "A form larger than 16 KB",
    422: "A query parameter out of its range, or not a choice of the consent",
    502: "The case API answered something unexpected",
    503: "The read models or the case API are not available now",
}
pages = APIRouter(
    prefix=BASE,
    tags=["the client's pages"],
    default_response_class=HTMLResponse,
    responses={
        status: {
            "description": text,
            # 422 of a path or query parameter is the API's problem, as on every route
            "content": {"text/html": {}, **({"application/problem+json": {}} if status == 422 else {})},
        }
        for status, text in _PAGE_STATUSES.items()
    },
)


def _deps(request: Request) -> QueryDependencies:
    return cast("QueryDependencies", request.app.state.deps)


# ------------------------------------------------------------------------------- answers
def _redirect(url: str) -> Response:
    """303 See Other: an empty page that says where to go on."""
    headers = {**NO_STORE, "Content-Type": "text/html; charset=utf-8"}
    return RedirectResponse(url, status_code=303, headers=headers)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _message(status: int, heading: str, text: str, back: tuple[str, str] | None = None) -> HTMLResponse:
    back_url, back_text = back or ("", "")
    page = render_page(
        "message.html",
        heading=heading,
        text=text,
        alert=status >= 400,
        back_url=back_url,
        back_text=back_text,
    )
    return _html(page, status)


def _sign_in(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    return _html(render_page("sign_in.html", action_url=f"{BASE}/logga-in", error=error), status)


# -------------------------------------------------------------------------------- session
@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in client: the token the identity provider gave them, and what it says."""

    token: str
    claims: TokenClaims

    @property
    def reader(self) -> Reader:
        c = self.claims
        return Reader(c.user_id, c.organisation_id, c.roles, c.principal)


class NotSignedIn(Exception):
    """No token, or one that does not verify: the sign-in page answers."""


async def session(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Session:
    token = credentials.credentials if credentials is not None else request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn("not signed in")
    try:
        claims = await anyio.to_thread.run_sync(_deps(request).tokens.verify, token)
    except (InvalidToken, KeysUnavailable) as error:
        raise NotSignedIn(str(error)) from None
    return Session(token, claims)


SessionDep = Annotated[Session, Depends(session)]


def _form_key(deps: QueryDependencies, request: Request) -> bytes:
    if deps.page_key:
        return deps.page_key
    if not hasattr(request.app.state, "page_key"):
        request.app.state.page_key = secrets.token_bytes(32)
    return cast(bytes, request.app.state.page_key)


def _form_token(request: Request, signed_in: Session, case_id: UUID) -> str:
    """Ties a withdrawal form to this sign-in and this case (the cookie is SameSite=Strict too)."""
    key = _form_key(_deps(request), request)
    material = f"{hashlib.sha256(signed_in.token.encode()).hexdigest()}:{case_id}".encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()


class BadForm(Exception):
    """A form body too large or not a form: answered 413 or 400, never read further."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value of each field), read no
    further than :data:`MAX_FORM_BYTES`: a sign-in is open to anyone."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadForm(413, f"Formuläret är större än {MAX_FORM_BYTES} byte.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadForm(413, f"Formuläret är större än {MAX_FORM_BYTES} byte.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "Formuläret gick inte att läsa.") from None
    return {name: values[0] for name, values in fields.items()}


async def bad_form(request: Request, error: Exception) -> Response:
    assert isinstance(error, BadForm)
    return _message(error.status, "Formuläret gick inte att läsa", error.text)


async def _queries(request: Request, position: int) -> Queries:
    """The read models, once they reflect ``position`` (at most the API's wait limit)."""
    deps = _deps(request)

    def reached() -> bool:
        try:
            return deps.served.wait_for(position, 0.0)[2]
        except NoReadModels:
            return True

    if position:
        await wait_until(reached, limit=deps.wait_limit, slots=request.app.state.waits)
    models, _, _ = deps.served.wait_for(position, 0.0)
    return Queries(models, deps.access_log, deps.today, deps.policy)


async def _read(
    request: Request, signed_in: Session, position: int, use: Any, resource: str, case_id: UUID | None = None
) -> Any:
    """``use(queries, reader)`` in a worker thread; a refusal or a missing case as a page.

    Only a client's token opens these pages; anyone else is refused here, and the refusal
    access-logged as any (``resource``, the case the path names)."""
    if signed_in.claims.principal != CLIENT_PRINCIPAL:
        reason = "client_only: these pages are the client's; staff read the case through the API"
        where = None if case_id is None else str(case_id)
        await anyio.to_thread.run_sync(
            lambda: record_access(
                _deps(request).access_log, signed_in.reader, where, resource, "denied", reason
            )
        )
        return _message(
            403,
            "Sidan är för den som samordningen gäller",
            "Min plan visas för den som samordningen gäller, inloggad med sin e-legitimation."
            " Personal läser ärendet i sitt eget system.",
        )
    try:
        queries = await _queries(request, position)
        return await anyio.to_thread.run_sync(use, queries, signed_in.reader)
    except NoReadModels:
        return _message(503, "Försök igen om en stund", "Uppgifterna byggs upp just nu.")
    except AccessDenied:
        return _message(
            403, "Ärendet är inte ditt", "Du kan bara se dina egna ärenden.", (f"{BASE}/", "Mina ärenden")
        )
    except CaseNotFound:
        return _message(
            404, "Ärendet finns inte", "Det finns inget sådant ärende.", (f"{BASE}/", "Mina ärenden")
        )


PositionQuery = Annotated[
    int, Query(ge=0, le=MAX_POSITION, description="Wait until the read models reflect it")
]


# --------------------------------------------------------------------------------- routes
@pages.get("/logga-in", summary="Sign in (the identity provider's token)")
def sign_in_page(request: Request) -> HTMLResponse:
    return _sign_in(request)


@pages.post("/logga-in", summary="Sign in: keep the token in a cookie for these pages")
async def sign_in(request: Request) -> Response:
    token = (await _form(request)).get("token", "").strip()
    try:
        claims = await anyio.to_thread.run_sync(_deps(request).tokens.verify, token)
    except (InvalidToken, KeysUnavailable):
        return _sign_in(request, "Inloggningen gick inte att kontrollera. Logga in igen.", 401)
    if claims.principal != CLIENT_PRINCIPAL:
        reader = Reader(claims.user_id, claims.organisation_id, claims.roles, claims.principal)
        reason = "client_only: these pages are the client's; staff read the case through the API"
        log = _deps(request).access_log
        await anyio.to_thread.run_sync(lambda: record_access(log, reader, None, "my_plan", "denied", reason))
        return _sign_in(request, "Min plan är för den som samordningen gäller.", 403)
    answer = _redirect(f"{BASE}/")
    expires = jwt_expiry(token)
    answer.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(0, int(expires - time.time())) if expires else None,
        path=BASE,
        httponly=True,
        # Lax, not Strict: the identity provider's sign-in arrives cross-site, and the pages'
        # one write (the withdrawal) carries a form token of its own.
        samesite="lax",
        secure=_secure(request),
    )
    return answer


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "testserver"})


def _secure(request: Request) -> bool:
    """The cookie holds a bearer token: Secure everywhere but on this machine's own loopback
    (the embedded defaults and tests speak plain HTTP there; a proxy's TLS is not visible)."""
    return request.url.scheme == "https" or (request.url.hostname or "") not in LOOPBACK


def jwt_expiry(token: str) -> float | None:
    """The verified token's ``exp`` (the cookie lives no longer than the token)."""
    value = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return float(value) if isinstance(value, int | float) else None


@pages.post("/logga-ut", summary="Sign out")
def sign_out() -> Response:
    answer = _redirect(f"{BASE}/logga-in")
    answer.delete_cookie(SESSION_COOKIE, path=BASE)
    return answer


@pages.get("/", summary="The signed-in client's cases")
async def my_cases_page(request: Request, signed_in: SessionDep) -> Response:
    def use(queries: Queries, reader: Reader) -> Response:
        cases = [
            {
                "url": f"{BASE}/{case['case_id']}",
                "municipality": case["municipality"]["name"],
                "closed": case["status"] == "closed",
            }
            for case in queries.my_cases(reader)
        ]
        return _html(render_page("my_cases.html", cases=cases, sign_out_url=f"{BASE}/logga-ut"))

    return cast(Response, await _read(request, signed_in, 0, use, "my_cases"))


@pages.get("/{case_id}", summary="Min plan: the whole plan of one of the client's cases")
async def my_plan_page(
    request: Request, case_id: UUID, signed_in: SessionDep, position: PositionQuery = 0
) -> Response:
    base = f"{BASE}/{case_id}"

    def use(queries: Queries, reader: Reader) -> Response:
        plan = queries.my_plan(reader, str(case_id), datetime.now(UTC))
        meetings = [{**m, "ics_url": f"{base}/moten/{m['meeting_id']}.ics"} for m in plan.meetings]
        page = render_my_plan_page(
            plan.view,
            meetings,
            plan.reads,
            links=MyPlanLinks(f"{base}/sip.pdf", f"{base}/tidiga-tecken.pdf", f"{base}/aterkalla"),
            client=ReaderId("", reader.user_id),
        )
        return _html(page)

    return cast(Response, await _read(request, signed_in, position, use, "my_plan", case_id))


def _pdf(content: bytes, name: str) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@pages.get("/{case_id}/sip.pdf", response_class=Response, summary="The current SIP as a PDF")
async def sip_pdf_page(request: Request, case_id: UUID, signed_in: SessionDep) -> Response:
    def use(queries: Queries, reader: Reader) -> Response:
        return _pdf(sip_pdf(queries.client_document(reader, str(case_id), "sip_pdf")), "sip.pdf")

    return cast(Response, await _read(request, signed_in, 0, use, "sip_pdf", case_id))


@pages.get("/{case_id}/tidiga-tecken.pdf", response_class=Response, summary="The early-warning plan as a PDF")
async def plan_pdf_page(request: Request, case_id: UUID, signed_in: SessionDep) -> Response:
    def use(queries: Queries, reader: Reader) -> Response:
        view = queries.client_document(reader, str(case_id), "early_warning_plan_pdf")
        return _pdf(early_warning_plan_pdf(view), "plan-for-tidiga-tecken.pdf")

    return cast(Response, await _read(request, signed_in, 0, use, "early_warning_plan_pdf", case_id))


@pages.get("/{case_id}/moten/{meeting_id}.ics", response_class=Response, summary="One coming meeting's .ics")
async def meeting_ics(request: Request, case_id: UUID, meeting_id: UUID, signed_in: SessionDep) -> Response:
    def use(queries: Queries, reader: Reader) -> Response:
        plan = queries.my_plan(reader, str(case_id), datetime.now(UTC), reads=0, resource="meeting_ics")
        found = [m for m in plan.meetings if m["meeting_id"] == str(meeting_id)]
        if not found:
            return _message(404, "Mötet finns inte", "Det finns inget sådant kommande möte.")
        return Response(
            meeting_calendar(found[0], now=datetime.now(UTC)),
            media_type="text/calendar",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="mote-{meeting_id}.ics"'},
        )

    return cast(Response, await _read(request, signed_in, 0, use, "meeting_ics", case_id))


@pages.get("/{case_id}/aterkalla", summary="Confirm a withdrawal of consent")
async def withdraw_page(
    request: Request,
    case_id: UUID,
    signed_in: SessionDep,
    withdraw: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    base = f"{BASE}/{case_id}"

    def use(queries: Queries, reader: Reader) -> Response:
        view = queries.client_document(reader, str(case_id), "withdrawal_form")
        try:
            choice = withdraw_choice(view, withdraw)
        except NotAWithdrawChoice as error:
            return _message(422, "Välj vad du vill återkalla", str(error), (base, MY_PLAN))
        page = render_withdraw_confirmation_page(
            view,
            choice,
            action_url=f"{base}/aterkalla",
            csrf_token=_form_token(request, signed_in, case_id),
            cancel_url=base,
        )
        return _html(page)

    return cast(Response, await _read(request, signed_in, 0, use, "withdrawal_form", case_id))


@pages.post("/{case_id}/aterkalla", summary="Withdraw consent: the client's own command to the case API")
async def withdraw(request: Request, case_id: UUID, signed_in: SessionDep) -> Response:
    base = f"{BASE}/{case_id}"
    form = await _form(request)

    def use(queries: Queries, reader: Reader) -> Any:
        return queries.client_document(reader, str(case_id), "withdrawal_form")

    view = await _read(request, signed_in, 0, use, "withdrawal_form", case_id)  # who, before what
    if isinstance(view, Response):
        return view
    sent = form.get(CSRF_FIELD, "").encode()
    if not hmac.compare_digest(sent, _form_token(request, signed_in, case_id).encode()):
        return _message(
            403, "Formuläret gick inte att kontrollera", "Börja om från Min plan.", (base, MY_PLAN)
        )
    try:
        choice = withdraw_choice(view, form.get(WITHDRAW_FIELD, ""))
    except NotAWithdrawChoice as error:
        return _message(422, "Välj vad du vill återkalla", str(error), (base, MY_PLAN))
    deps = _deps(request)
    command = {
        "withdrawn_on": deps.today().isoformat(),
        "entire": choice.entire,
        "organisation_ids": [] if choice.entire else [choice.organisation_id],
        "reason": "Återkallat av brukaren i Min plan",
    }
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{deps.case_api}/v1/cases/{case_id}/consents/withdrawal",
                json=command,
                headers={
                    "Authorization": f"Bearer {signed_in.token}",
                    # One withdrawal per consent and choice, whatever the browser sends twice.
                    "Idempotency-Key": f"min-plan-{view['consent']['consent_id']}-{choice.value}",
                    "X-Correlation-ID": request.state.correlation_id,
                },
            )
        written = answer.json() if answer.status_code == 200 else None
        position = int(written["position"]) if isinstance(written, dict) else None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError):
        # The case API could not be reached or answered something else than a write's result.
        return _message(
            503, "Försök igen om en stund", "Återkallelsen kunde inte skickas nu.", (base, MY_PLAN)
        )
    if answer.status_code == 401:
        return _sign_in(request, "Inloggningen har gått ut. Logga in igen och försök på nytt.", 401)
    if answer.status_code != 200 or position is None:
        # The case refused it (e.g. the consent was withdrawn meanwhile): the rule's words are
        # the case API's, in English; the page says what it means for the client.
        return _message(
            409 if answer.status_code == 409 else 502,
            "Återkallelsen gick inte igenom",
            "Ärendet tog inte emot återkallelsen. Samtycket kan redan vara återkallat; se Min plan.",
            (base, MY_PLAN),
        )
    return _redirect(f"{base}?position={position}")


async def not_signed_in(request: Request, error: Exception) -> Response:
    """A page asked without a valid sign-in: the sign-in page itself, 401 (after it, the
    client's cases)."""
    return _sign_in(
        request, "Logga in för att se sidan." if request.method == "GET" else "Logga in igen.", 401
    )
