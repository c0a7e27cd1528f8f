"""Plan links (ADR 0016): the plans, read-only, for the people they name, without an account.

- ``GET /v1/plan-links/{case_id}/{holder}?sig=…``: the early-warning plan as it now stands (HTML);
- ``GET /v1/plan-links/{case_id}/{holder}/plan.pdf?sig=…``: the same plan, printable;
- ``GET /v1/plan-links/{case_id}/{holder}/sip.pdf?sig=…``: the whole SIP, for a resource group
  member (the link in the SIP notice).

The signature (``services.shared.plan_links``) is the credential; whether the holder is still
named and still covered by the consent is decided on the case overview at each opening
(``services.projections.domain.plan_links``). Every opening and every refusal is in the access
log as the holder (principal ``plan_link``, no roles). A refusal is a 403: a Swedish page saying
the link no longer works, or a problem for a client that does not ask for HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Protocol
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from services.projections.application.ports import AccessLog, NoReadModels, ServedReadModels
from services.projections.application.queries import Reader
from services.projections.domain import plan_links as rule
from services.projections.domain.case_view import View
from services.projections.presentation import early_warning_plan_pdf, render_crisis_plan_page, sip_pdf
from services.projections.presentation.plan_links import render_link_refused_page
from services.shared.access import record_access
from services.shared.http_app import deps_of
from services.shared.plan_links import MAX_HOLDER_LENGTH, PLAN_LINK_PRINCIPAL, ROUTE_PREFIX, LinkKind, verify
from services.shared.problems import ProblemException, problem_response, problem_responses

router = APIRouter(prefix=ROUTE_PREFIX, tags=["plan links"], responses=problem_responses(403, 422, 503))

# What a link's response must not leave behind: a copy in a cache, the link in a Referer; and
# what its page may do: nothing from elsewhere, never inside another site's frame (the pages'
# one inline <style> is all that is not a file of the query API's own).
CONTENT_SECURITY_POLICY = "frame-ancestors 'none'; default-src 'self'; style-src 'self' 'unsafe-inline'"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
BAD_SIGNATURE = "bad_signature"
UNKNOWN_CASE = "unknown_case"

# Long enough for the longest holder key the contracts allow (a coordinator's, escaped).
HolderPath = Annotated[
    str, Path(min_length=3, max_length=MAX_HOLDER_LENGTH, pattern=r"^[a-z]+:[A-Za-z0-9._@+=:~-]+$")
]
SignatureQuery = Annotated[str, Query(max_length=200, description="The link's signature")]


class PlanLinkDeps(Protocol):
    """What the routes use of the query API's dependencies (``QueryDependencies``)."""

    @property
    def served(self) -> ServedReadModels: ...

    @property
    def access_log(self) -> AccessLog: ...

    @property
    def today(self) -> Callable[[], date]: ...

    @property
    def plan_link_key(self) -> bytes | None: ...  # None: every plan link is refused


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _open(request: Request, case_id: UUID, holder: str, sig: str, kind: LinkKind, resource: str) -> View:
    """The case overview if the link opens today; else the refusal, logged either way."""
    deps = deps_of(request, PlanLinkDeps)  # type: ignore[type-abstract]
    key = deps.plan_link_key
    try:
        models, _, _ = deps.served.wait_for(0, 0.0)
    except NoReadModels as error:
        raise ProblemException(503, "Service Unavailable", str(error), code="no_read_models") from None
    decision: rule.Decision | None = None
    view = None
    if key is None or not verify(key, case_id, holder, kind, sig):
        reason: str | None = BAD_SIGNATURE
    else:
        view = models.overview(str(case_id))
        if view is None:
            reason = UNKNOWN_CASE
        else:
            decision = rule.decide(view, holder, kind, deps.today().isoformat())
            reason = decision.refused
    found = decision.holder if decision is not None else None
    reader = Reader(
        user_id=holder,
        organisation_id=found.organisation_id if found else "",
        roles=frozenset(),
        principal=PLAN_LINK_PRINCIPAL,
    )
    record_access(deps.access_log, reader, str(case_id), resource, "denied" if reason else "granted", reason)
    if reason is not None or view is None:
        raise _Refused(reason or UNKNOWN_CASE)
    return view


def _refusal(request: Request, reason: str) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(render_link_refused_page(), status_code=403, headers=HEADERS)
    return problem_response(
        request,
        403,
        "Forbidden",
        "this plan link no longer works (not named in the plan, not covered by the consent, or not valid)",
        code="plan_link_refused",
        rule=reason,
        headers=HEADERS,
    )


def _pdf(body: bytes, filename: str) -> Response:
    headers = {**HEADERS, "Content-Disposition": f'inline; filename="{filename}"'}
    return Response(body, media_type="application/pdf", headers=headers)


@router.get("/{case_id}/{holder}", response_class=HTMLResponse, summary="The early-warning plan (page)")
def plan_page(request: Request, case_id: UUID, holder: HolderPath, sig: SignatureQuery = "") -> Response:
    try:
        view = _open(request, case_id, holder, sig, LinkKind.EARLY_WARNING_PLAN, "early_warning_plan")
    except _Refused as refused:
        return _refusal(request, refused.reason)
    pdf_url = f"{request.url.path}/plan.pdf?sig={sig}"
    return HTMLResponse(render_crisis_plan_page(view, pdf_url=pdf_url), headers=HEADERS)


@router.get(
    "/{case_id}/{holder}/plan.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    summary="The early-warning plan (PDF)",
)
def plan_pdf(request: Request, case_id: UUID, holder: HolderPath, sig: SignatureQuery = "") -> Response:
    try:
        view = _open(request, case_id, holder, sig, LinkKind.EARLY_WARNING_PLAN, "early_warning_plan_pdf")
    except _Refused as refused:
        return _refusal(request, refused.reason)
    return _pdf(early_warning_plan_pdf(view), "plan-tidiga-tecken.pdf")


@router.get(
    "/{case_id}/{holder}/sip.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    summary="The whole SIP, for a resource group member (PDF)",
)
def whole_sip_pdf(request: Request, case_id: UUID, holder: HolderPath, sig: SignatureQuery = "") -> Response:
    try:
        view = _open(request, case_id, holder, sig, LinkKind.SIP, "sip_pdf")
    except _Refused as refused:
        return _refusal(request, refused.reason)
    return _pdf(sip_pdf(view), "sip.pdf")
