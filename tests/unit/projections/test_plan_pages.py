"""The client's *Min plan* page, the withdrawal confirmation and the relatives' plan page."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from services.projections.domain.case_view import CHECKLIST_STEPS, View, mark_overdue
from services.projections.presentation import (
    CSRF_FIELD,
    WITHDRAW_ENTIRE,
    WITHDRAW_FIELD,
    MyPlanLinks,
    NotAWithdrawChoice,
    ReaderId,
    render_crisis_plan_page,
    render_my_plan_page,
    render_withdraw_confirmation_page,
    withdraw_choice,
)
from services.projections.presentation.labels import CHECKLIST_STEPS as CHECKLIST_LABELS
from tests.domain import specs

from .plan_view import ACTIONS, CONTACT_PHONES, CONTACTS, SIGNS, access_log, meetings, plan_view

LINKS = MyPlanLinks(
    sip_pdf="plan/sip.pdf", early_warning_plan_pdf="plan/tidiga-tecken.pdf", withdraw_consent="samtycke"
)
CLIENT = ReaderId("klient", "tolvan")


class Outline(HTMLParser):
    """The headings, landmarks, scripts and forms of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    return parser


def page(view: View | None = None, **kwargs: Any) -> str:
    return render_my_plan_page(
        view or plan_view(), meetings(), access_log(), links=LINKS, client=CLIENT, **kwargs
    )


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_page_shows_every_sip_action_with_what_who_when_and_how() -> None:
    html = page()
    text = text_of(html)
    for what, who in ACTIONS.items():
        assert what in text
        assert who in text or who == specs.CLIENT.name  # the client's own reads "Du själv"
    assert "Besök tillsammans med Anna" in text
    assert "Senast 30 april 2025" in text
    assert "Arbetsförmedlingen (utanför resursgruppen)" in text
    assert "Leila Haddad, Psykiatri Nordost, Västra Götalandsregionen" in text


def test_the_page_names_the_principal_with_overall_responsibility_and_the_goals() -> None:
    text = text_of(page())
    assert "Huvudman med övergripande ansvar Göteborgs Stad, socialförvaltningen Nordost (kommun)" in text
    assert "Långsiktigt mål: Ha ett eget boende (till 31 januari 2026), pågår" in text
    assert "Delmål: Söka tre lägenheter i maj" in text


def test_the_clients_own_action_is_marked_and_no_other() -> None:
    html = page()
    own = re.findall(r'<li class="card own">(.*?)</li>', html, re.S)
    assert len(own) == 1
    assert "Söka tre lägenheter i Örgryte" in own[0]
    assert "Din egen åtgärd" in own[0]
    assert "Du själv" in own[0]
    assert html.count("Din egen åtgärd") == 1


def test_the_whole_early_warning_plan_is_on_the_page_with_callable_numbers() -> None:
    html = page()
    text = text_of(html)
    for sign in SIGNS:
        assert sign in text
    for contact, phone in zip(CONTACTS, CONTACT_PHONES, strict=True):
        assert contact in text
        assert phone in text
    assert 'href="tel:0701234567"' in html
    assert "Ringa Åsa och berätta hur jag mår" in text
    assert "Åsa (syster): Följa med till vårdcentralen" in text


def test_text_people_wrote_is_escaped() -> None:
    view = plan_view()
    view["goals"][0]["description"] = "<script>alert('mål')</script>"
    view["sip"]["actions"][0]["how"] = '"><img src=x onerror=alert(1)>'
    html = page(view)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;mål&#39;)&lt;/script&gt;" in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_page_is_accessible_swedish_phone_sized_and_needs_no_javascript() -> None:
    html = page()
    parsed = outline(html)
    assert parsed.named("html") == [{"lang": "sv"}]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in parsed.named("meta")
    assert len(parsed.named("main")) == 1
    assert parsed.named("nav")[0].get("aria-label")
    assert parsed.named("script") == []
    assert parsed.headings[0] == 1
    assert parsed.headings.count(1) == 1
    for previous, current in zip(parsed.headings, parsed.headings[1:], strict=False):
        assert current <= previous + 1, f"heading h{current} after h{previous}"
    for link in parsed.named("a"):
        assert link.get("href")
    # Every link has words of its own: no bare "här" or an empty anchor.
    for words in re.findall(r"<a [^>]*>(.*?)</a>", html, re.S):
        assert text_of(words)
        assert text_of(words).lower() not in {"här", "länk", "klicka här"}


def test_the_page_links_the_two_pdfs_the_callers_way() -> None:
    links = outline(page()).named("a")
    hrefs = {a["href"] for a in links}
    assert {"plan/sip.pdf", "plan/tidiga-tecken.pdf"} <= hrefs


def test_meetings_are_in_time_order_in_swedish_time_with_their_ics_links() -> None:
    html = page()
    text = text_of(html)
    first = text.index("Möte med din samordnare 20 mars 2025 kl. 10.30–11.30")
    second = text.index("Resursgruppsmöte 2 juni 2025 kl. 10.00–11.00")
    assert first < second
    assert "Plats: Vårdcentralen Högsbo" in text
    ics = [a["href"] for a in outline(html).named("a") if (a.get("href") or "").endswith(".ics")]
    assert ics == [
        "meetings/b0a4c1de-0000-4000-8000-000000000001.ics",
        "meetings/b0a4c1de-0000-4000-8000-000000000002.ics",
    ]


def test_the_access_log_says_who_read_what_newest_first_and_the_client_as_du_sjalv() -> None:
    text = text_of(page(organisation_names={specs.UNRELATED_ORG.id: specs.UNRELATED_ORG.name}))
    section = text[text.index("Vem har läst mina uppgifter Varje") :]
    own = section.index("12 mars 2025 kl. 19.40 Du själv Läste översikten över ditt ärende")
    refused = section.index(
        f"11 mars 2025 kl. 14.05 {specs.UNRELATED_ORG.name}, användare maria.holm"
        " Försökte läsa men fick inte: journalen över ditt ärende"
    )
    anna = section.index(
        "10 mars 2025 kl. 09.15 Psykiatri Nordost, Västra Götalandsregionen, användare anna.lindqvist"
        " Läste översikten"
    )
    assert own < refused < anna


def test_the_mapping_checklist_shows_each_step_its_date_and_who_took_part() -> None:
    text = text_of(page())
    assert set(CHECKLIST_LABELS) == set(CHECKLIST_STEPS)
    for step in CHECKLIST_STEPS:
        assert CHECKLIST_LABELS[step] in text
    assert "Intervju Gjort 27 januari 2025 Med: Anna Lindqvist, Erik Johansson, Tolvan Tolvansson" in text
    assert "QLS-100 Inte gjort ännu." in text


def test_earlier_sip_versions_are_shown_only_when_there_are_some() -> None:
    view = plan_view()
    assert "Tidigare SIP-versioner" not in page(view)
    earlier = copy.deepcopy(view["sip"])
    earlier.update(version=0, decided_on="2025-01-30", initial=True)
    earlier["actions"] = [{**earlier["actions"][0], "what": "Träffa psykiatrin en första gång"}]
    text = text_of(page(view, earlier_sips=[earlier, view["sip"]]))
    assert "Tidigare SIP-versioner Version 0, beslutad 30 januari 2025" in text
    assert "Träffa psykiatrin en första gång" in text
    assert text.count("Version 1, beslutad") == 1  # the current one is not repeated as earlier


def test_the_withdrawal_form_offers_the_whole_consent_or_one_of_its_organisations() -> None:
    parsed = outline(page())
    form = parsed.named("form")[0]
    assert form == {"method": "get", "action": "samtycke"}
    radios = [i["value"] for i in parsed.named("input") if i.get("name") == WITHDRAW_FIELD]
    assert radios == [WITHDRAW_ENTIRE, specs.REGION_ORG.id, specs.MUNICIPALITY_ORG.id, specs.OTHER_ORG.id]


def test_the_confirmation_posts_the_choice_with_the_callers_csrf_token() -> None:
    view = plan_view()
    choice = withdraw_choice(view, specs.OTHER_ORG.id)
    html = render_withdraw_confirmation_page(
        view, choice, action_url="samtycke/aterkalla", csrf_token='t"<k>', cancel_url="."
    )
    parsed = outline(html)
    assert parsed.named("form") == [{"method": "post", "action": "samtycke/aterkalla"}]
    hidden = {i["name"]: i["value"] for i in parsed.named("input") if i.get("type") == "hidden"}
    assert hidden == {CSRF_FIELD: 't"<k>', WITHDRAW_FIELD: specs.OTHER_ORG.id}
    assert "för Arbetsförmedlingen" in text_of(html)
    assert 'value="t&#34;&lt;k&gt;"' in html
    entire = render_withdraw_confirmation_page(
        view, withdraw_choice(view, WITHDRAW_ENTIRE), action_url="x", csrf_token="t", cancel_url="."
    )
    assert "återkalla hela ditt samtycke" in text_of(entire)


def test_the_confirmation_does_not_promise_that_a_coordinators_organisation_stops_reading() -> None:
    view = plan_view()
    outside = render_withdraw_confirmation_page(
        view, withdraw_choice(view, specs.OTHER_ORG.id), action_url="x", csrf_token="t", cancel_url="."
    )
    assert "Då får Arbetsförmedlingen inte längre ta del av uppgifterna om dig" in text_of(outside)
    coordinating = withdraw_choice(view, specs.REGION_ORG.id)
    assert coordinating.still_reading == (specs.REGION_ORG.name,)
    text = text_of(
        render_withdraw_confirmation_page(view, coordinating, action_url="x", csrf_token="t", cancel_url=".")
    )
    assert f"{specs.REGION_ORG.name} fortfarande läsa ditt ärende så länge hen är din samordnare" in text
    assert "inte längre ta del" not in text
    entire = withdraw_choice(view, WITHDRAW_ENTIRE)
    assert set(entire.still_reading) == {specs.REGION_ORG.name, specs.MUNICIPALITY_ORG.name}


def test_a_withdrawal_names_the_whole_consent_or_an_organisation_it_covers_now() -> None:
    view = plan_view()
    with pytest.raises(NotAWithdrawChoice):
        withdraw_choice(view, specs.UNRELATED_ORG.id)
    view["consent"]["withdrawn"] = True
    view["consent"]["withdrawn_on"] = "2025-03-10"
    with pytest.raises(NotAWithdrawChoice):
        withdraw_choice(view, WITHDRAW_ENTIRE)
    html = page(view)
    assert outline(html).named("form") == []
    assert "Du återkallade ditt samtycke 10 mars 2025" in text_of(html)


def test_a_case_without_sip_or_plan_says_so() -> None:
    view = plan_view()
    view["sip"] = None
    view["early_warning_plan"] = None
    text = text_of(render_my_plan_page(view, [], [], links=LINKS))
    assert "Ni har inte beslutat någon SIP ännu." in text
    assert "Ni har inte gjort någon plan för tidiga tecken ännu." in text
    assert "Inga möten är inbokade." in text
    assert "Ingen har läst dina uppgifter ännu." in text


def test_the_relatives_page_shows_the_plan_alone() -> None:
    view = plan_view()
    html = render_crisis_plan_page(view, pdf_url="plan.pdf")
    text = text_of(html)
    for sign in SIGNS:
        assert sign in text
    for contact in CONTACTS:
        assert contact in text
    assert "Det här gör Tolvan Tolvansson själv Ringa Åsa" in text
    assert {"href": "plan.pdf", "type": "application/pdf"} in outline(html).named("a")
    for what in ACTIONS:
        assert what not in text
    assert specs.CLIENT.personal_identity_number not in text
    assert outline(html).named("form") == []
    assert outline(html).named("script") == []


def test_meeting_times_may_come_as_datetimes() -> None:
    as_datetimes = [
        {
            **m,
            "starts_at": datetime.fromisoformat(m["starts_at"]),
            "ends_at": datetime.fromisoformat(m["ends_at"]),
        }
        for m in meetings()
    ]
    html = render_my_plan_page(plan_view(), as_datetimes, [], links=LINKS)
    assert "20 mars 2025 kl. 10.30–11.30" in text_of(html)


def test_an_action_past_its_date_says_so_when_the_view_was_served_as_of_today() -> None:
    served = mark_overdue(plan_view(), "2025-05-15")
    text = text_of(page(served))
    assert "Senast 30 april 2025 (datumet har passerat)" in text
    assert "Senast 31 maj 2025 (datumet" not in text
    assert "(datumet har passerat)" not in text_of(page())
