"""The client's pages, server-rendered HTML in Swedish (Jinja2, autoescaped, no JavaScript).

Pure: a view and lists in, a string out. URLs are the caller's (relative, as its routes
name them); a form's field names are the constants here, so the routes that read the
forms use the same names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from services.projections.domain.case_view import View
from services.projections.presentation import content
from services.projections.presentation.content import ReaderId

WITHDRAW_FIELD = "withdraw"  # WITHDRAW_ENTIRE, or the id of one organisation of the consent
WITHDRAW_ENTIRE = "_hela"  # outside the organisation ids' alphabet: never an organisation
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class MyPlanLinks:
    """The caller's URLs the page links to."""

    sip_pdf: str
    early_warning_plan_pdf: str
    withdraw_consent: str  # the confirmation page; the page's form GETs it with WITHDRAW_FIELD


@dataclass(frozen=True)
class WithdrawChoice:
    """What the client chose to withdraw: the whole consent, or one organisation's part."""

    organisation_id: str | None = None
    organisation_name: str | None = None
    # Coordinators' organisations read the case whatever the consent says (ADR 0005): the
    # page must not promise that they stop.
    still_reading: tuple[str, ...] = ()

    @property
    def entire(self) -> bool:
        return self.organisation_id is None

    @property
    def value(self) -> str:
        """The form value that names this choice (:data:`WITHDRAW_FIELD`)."""
        return self.organisation_id or WITHDRAW_ENTIRE


class NotAWithdrawChoice(ValueError):
    """A form value that is neither the whole consent nor an organisation it covers now."""


def withdraw_choice(view: View, value: str) -> WithdrawChoice:
    """The choice a form value names, checked against the view's current consent."""
    consent = view.get("consent")
    if not consent or consent.get("withdrawn"):
        raise NotAWithdrawChoice("there is no consent in force to withdraw")
    coordinating = {c["organisation"]["id"]: c["organisation"]["name"] for c in view.get("coordinators", ())}
    if value == WITHDRAW_ENTIRE:
        return WithdrawChoice(still_reading=tuple(sorted(set(coordinating.values()))))
    for organisation in consent["organisations"]:
        if organisation["id"] == value:
            still = (organisation["name"],) if organisation["id"] in coordinating else ()
            return WithdrawChoice(organisation["id"], organisation["name"], still)
    raise NotAWithdrawChoice(f"{value!r} is not an organisation the consent covers")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("services.projections.presentation", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)


def render_page(template: str, **values: Any) -> str:
    """One of the simple pages (``sign_in.html``, ``my_cases.html``, ``message.html``)."""
    return _render(template, **values)


def render_my_plan_page(
    view: View,
    meetings: Iterable[Mapping[str, Any]],
    access_log: Iterable[Mapping[str, Any]],
    *,
    links: MyPlanLinks,
    client: ReaderId | None = None,
    organisation_names: Mapping[str, str] | None = None,
    earlier_sips: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """*Min plan*: the SIP, earlier versions, the mapping, the early-warning plan, meetings, reads.

    ``meetings`` are the upcoming meetings (``kind``, ``starts_at``, ``ends_at``, ``location``,
    ``ics_url``); ``access_log`` the case's access-log entries as the query API gives them;
    ``client`` who the client is in that log (shown as "du själv"); ``organisation_names``
    names for organisation ids the view does not name; ``earlier_sips`` earlier SIPs shaped
    like the view's ``sip`` (default: the view's ``sip_history``, if it has one).
    """
    return _render(
        "my_plan.html",
        client_name=view["client"]["name"],
        links=links,
        sip=content.current_sip(view),
        earlier=content.earlier_sips(view, earlier_sips),
        checklist=content.checklist(view),
        plan=content.warning_plan(view),
        meetings=content.meetings(meetings),
        contacts=content.contacts(view),
        contact_period=content.contact_period(view),
        consent=content.consent_state(view),
        reads=content.reads(view, access_log, client, organisation_names),
        withdraw_field=WITHDRAW_FIELD,
        withdraw_entire=WITHDRAW_ENTIRE,
    )


def render_withdraw_confirmation_page(
    view: View, choice: WithdrawChoice, *, action_url: str, csrf_token: str, cancel_url: str
) -> str:
    """What withdrawing means, and a POST form (``csrf_token``, :data:`WITHDRAW_FIELD`) to do it."""
    return _render(
        "withdraw_confirm.html",
        client_name=view["client"]["name"],
        choice=choice,
        action_url=action_url,
        csrf_token=csrf_token,
        cancel_url=cancel_url,
        csrf_field=CSRF_FIELD,
        withdraw_field=WITHDRAW_FIELD,
    )


def render_crisis_plan_page(view: View, *, pdf_url: str) -> str:
    """The early-warning plan alone, read-only, for the people it names (no staff role)."""
    return _render(
        "crisis_plan.html",
        client_name=view["client"]["name"],
        plan=content.warning_plan(view),
        pdf_url=pdf_url,
    )
