"""The notifications API: a case's delivery record, and acknowledgements of urgent messages.

- ``GET /v1/cases/{id}/notifications``: who was told what, when, on which channel, and
  how it went (sent, failed with the reason, cancelled by a consent withdrawal,
  acknowledged). Same bearer tokens, roles and access rule as the other APIs: the
  caller's organisation coordinates the case or is covered by its current consent.
- ``GET|POST /v1/acknowledgements/{delivery}?signature=…``: the link in an urgent
  message. The signature is the credential (an HMAC of the delivery key), so a person
  reached by SMS in a crisis confirms without a login. ``GET`` (opening the link) only
  shows what would be confirmed, with a button; ``POST`` (the button, or an
  organisation's system) acknowledges: a mail scanner that follows links must not
  silence an urgent alert.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from services.notifications.application.ports import DeliveryRow
from services.notifications.application.service import NotificationsService
from services.notifications.domain.audience import Audience, local_day
from services.shared.access import AccessRecorder, may_read, record_access, refusal
from services.shared.auth import TokenClaims, TokenService
from services.shared.http_app import deps_of, service_app
from services.shared.http_auth import bearer, verified_claims
from services.shared.problems import (
    ProblemException,
    forbidden,
    problem_responses,
)

READ_ROLES = frozenset({"coordinator", "manager"})


class DeliveryOut(BaseModel):
    delivery_key: str
    message_id: str
    template: str
    cause_event_id: str
    cause_event_type: str
    recipient_id: str
    recipient_name: str
    recipient_role: str
    organisation_id: str | None
    channel: str
    urgent: bool
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None


class DeliveryList(BaseModel):
    case_id: UUID
    items: list[DeliveryOut]


class Acknowledged(BaseModel):
    delivery_key: str
    acknowledged_at: datetime
    message: str


def _out(row: DeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        delivery_key=row.delivery_key,
        message_id=row.message_id,
        template=row.template,
        cause_event_id=row.cause_event_id,
        cause_event_type=row.cause_event_type,
        recipient_id=row.person["key"],
        recipient_name=row.person["name"],
        recipient_role=row.person["role"],
        organisation_id=row.person.get("organisation_id"),
        channel=row.channel,
        urgent=row.urgent,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=datetime.fromisoformat(row.created_at),
        sent_at=datetime.fromisoformat(row.sent_at) if row.sent_at else None,
        acknowledged_at=datetime.fromisoformat(row.acknowledged_at) if row.acknowledged_at else None,
    )


@dataclass(frozen=True, slots=True)
class NotificationsApiDependencies:
    service: NotificationsService
    tokens: TokenService
    access_log: AccessRecorder  # every read of a case's record, and every refusal


router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 404, 422, 503))


def create_app(deps: NotificationsApiDependencies) -> FastAPI:
    return service_app(
        title="VSS notifications",
        description="Each case's delivery record (who was told what, when) and acknowledgements.",
        deps=deps,
        routers=[router],
        # pending and failed deliveries, open alerts
        health=deps.service.summary,
    )


def _deps(request: Request) -> NotificationsApiDependencies:
    return deps_of(request, NotificationsApiDependencies)


def reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> TokenClaims:
    claims = verified_claims(_deps(request).tokens, credentials)
    if not claims.roles & READ_ROLES and not claims.is_client:
        refused = forbidden(
            f"reading the delivery record needs one of the roles {sorted(READ_ROLES)}", "role_required"
        )
        case_id = request.path_params.get("case_id")
        record_access(
            _deps(request).access_log,
            claims,
            str(case_id) if case_id is not None else None,
            "notifications",
            "denied",
            refused.detail,
        )
        raise refused
    return claims


@router.get("/cases/{case_id}/notifications", response_model=DeliveryList, tags=["delivery record"])
def case_notifications(
    case_id: UUID, claims: Annotated[TokenClaims, Depends(reader)], request: Request
) -> DeliveryList:
    """Every message decided for the case, oldest first, with how its delivery went."""
    service = _deps(request).service
    value = service.store.audience(str(case_id))
    if value is None:
        raise ProblemException(
            404, "Not found", f"no notifications are known for case {case_id}", code="case_known"
        )
    audience = Audience.from_json(value, meetings=False)  # who may read it: no meeting needed
    deps = _deps(request)

    def log(outcome: str, reason: str | None = None) -> None:
        record_access(deps.access_log, claims, str(case_id), "notifications", outcome, reason)

    today = local_day(service.clock.now()).isoformat()
    if not may_read(claims, audience.grants(), audience.client_pin, today):
        rule, detail = refusal(claims, case_id)
        refused = forbidden(detail, rule)
        log("denied", refused.detail)
        raise refused
    log("granted")
    return DeliveryList(case_id=case_id, items=[_out(r) for r in service.deliveries(case_id)])


def _signed(request: Request, delivery_key: str, signature: str) -> DeliveryRow:
    """The delivery a link names, if the link's signature is right (403) and it exists (404)."""
    service = _deps(request).service
    if not service.signer.valid(delivery_key, signature):
        raise ProblemException(
            403,
            "Forbidden",
            "the link's signature does not match: use the link exactly as it came",
            code="bad_signature",
            field="signature",
            rule="signed_link",
        )
    row = service.store.delivery(delivery_key)
    if row is None:
        raise ProblemException(404, "Not found", f"no message {delivery_key}", code="delivery_known")
    return row


ACK_LINK = "ack_link"  # the principal of a read through an acknowledgement link


def _log_link_read(request: Request, row: DeliveryRow, resource: str) -> None:
    """The link holder read something of the case (what is confirmed; that it was): logged
    like any read, as the recipient the link was made for (the signature is their credential).
    Refused signatures are not: nobody is known, and an unauthenticated loop must not write."""
    person = row.person
    organisation = str(person.get("organisation_id") or ACK_LINK)
    holder = TokenClaims(str(person.get("key")), organisation, organisation, ACK_LINK, frozenset())
    record_access(_deps(request).access_log, holder, row.case_id, resource, "granted")


def _acknowledge(request: Request, delivery_key: str, signature: str) -> Acknowledged:
    _log_link_read(request, _signed(request, delivery_key, signature), "acknowledgement")
    row = _deps(request).service.acknowledge(delivery_key)
    if row is None or row.acknowledged_at is None:
        raise ProblemException(404, "Not found", f"no message {delivery_key}", code="delivery_known")
    return Acknowledged(
        delivery_key=delivery_key,
        acknowledged_at=datetime.fromisoformat(row.acknowledged_at),
        message="Tack, bekräftat. / Thank you, acknowledged.",
    )


Signature = Annotated[
    str,
    Query(
        min_length=8,
        max_length=100,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="From the message's link (URL-safe base64)",
    ),
]

# What the page names: no more than the message itself told the link's holder.
_WHAT = {
    "early_warning": "Tidiga varningstecken: krisplanen gäller",
    "early_warning_escalation": "Obekräftad krissignal (till jourkontakten)",
}
_ROLE = {
    "client": "klient",
    "coordinator": "samordnare",
    "relative": "närstående",
    "professional": "yrkesperson",
    "plan_contact": "kontakt i krisplanen",
    "duty": "jourkontakt",
}
_STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _when(value: str) -> str:
    return f"{datetime.fromisoformat(value).astimezone(_STOCKHOLM):%Y-%m-%d %H:%M}"


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html>\n<html lang="sv"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}"
        "</body></html>\n",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get(
    "/acknowledgements/{delivery_key}",
    response_class=HTMLResponse,
    tags=["acknowledgements"],
    responses={200: {"content": {"text/html": {}}, "description": "What the link confirms, and a button"}},
)
def acknowledgement_page(delivery_key: str, signature: Signature, request: Request) -> HTMLResponse:
    """The link in an urgent message: a page saying what would be confirmed, with a button that
    POSTs. Opening the link acknowledges nothing (mail scanners open links)."""
    row = _signed(request, delivery_key, signature)
    _log_link_read(request, row, "acknowledgement_page")
    facts = [
        ("Meddelande", _WHAT.get(row.template, "Brådskande meddelande")),
        ("Ärende", row.case_id[:8]),
        ("Till", _ROLE.get(str(row.person.get("role")), "mottagare")),
        ("Skickat", _when(row.sent_at) if row.sent_at else "inte ännu"),
    ]
    listed = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    if row.acknowledged_at is not None:
        done = f"<p>Redan bekräftat {html.escape(_when(row.acknowledged_at))}.</p>\n"
        return _page("Bekräftelse", f"<dl>{listed}</dl>\n{done}")
    action = f"{quote(delivery_key, safe='')}?{urlencode({'signature': signature})}"
    form = (
        f'<form method="post" action="{html.escape(action)}">'
        '<button type="submit">Bekräfta att jag har sett meddelandet</button></form>\n'
    )
    return _page("Bekräfta meddelandet", f"<dl>{listed}</dl>\n{form}")


@router.post(
    "/acknowledgements/{delivery_key}",
    response_model=Acknowledged,
    tags=["acknowledgements"],
    responses={200: {"content": {"text/html": {}}}},
)
def acknowledge(delivery_key: str, signature: Signature, request: Request) -> Acknowledged | Response:
    """Acknowledges (a repeat keeps the first time): the page's button, or an organisation's
    system. JSON, or a short page for a browser (``Accept: text/html``)."""
    done = _acknowledge(request, delivery_key, signature)
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "application/json" not in accept:
        when = html.escape(_when(done.acknowledged_at.isoformat()))
        return _page("Tack, bekräftat", f"<p>Bekräftat {when}.</p>\n")
    return done
