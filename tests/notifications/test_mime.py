"""The e-mail's bytes written directly (``mime.email_bytes``) read as the email package's
message (``build_email``): the same headers decoded, parts, types, parameters, file names
and bodies, for every template in both languages and for generated subjects and bodies."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications.application.channels import Attachment, Channel, OutgoingMessage
from services.notifications.infrastructure.channels import _sender_line, build_email, email_of
from services.notifications.infrastructure.templates import BUILT_IN, LANGUAGES

SENDERS = [("VSS Vård- och stödsamordning", "noreply@vss.example"), ("VSS – Samverkan", "noreply@vss.se")]
DATE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ICS = (
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:m-1@vss.se\r\n"
    b"SUMMARY:Resursgruppsm\xc3\xb6te\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
INVITATION = Attachment("invite.ics", 'text/calendar; method=REQUEST; charset="utf-8"', ICS)
NOTES = Attachment("notes.txt", "text/plain; charset=utf-8", "Dagordning: uppföljning".encode())
KEY = "5f0c7c1e-2b1a-4c7e-9a55-0d1f7e0b1c2d:pers-1:email"


def message(subject: str, body: str, **changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "delivery_key": KEY,
        "message_id": f"<{KEY}@vss.se>",
        "channel": Channel.EMAIL,
        "address": "anna.k@example.org",
        "subject": subject,
        "body": body,
        "headers": {"X-VSS-Case": "5f0c7c1e", "X-VSS-Delivery": KEY},
    }
    values.update(changes)
    return OutgoingMessage(**values)


def both(outgoing: OutgoingMessage, sender: tuple[str, str] = SENDERS[0]) -> tuple[bytes, bytes]:
    """(the bytes written directly, what aiosmtplib sent of build_email's message before)."""
    new = email_of(outgoing, sender, _sender_line(sender), DATE)
    assert isinstance(new, bytes), "written directly"
    old = flatten_message(build_email(outgoing, sender, DATE), utf8=False, cte_type="8bit")
    return new, old


def reading(raw: bytes) -> list[Any]:
    """What a reader sees: each part's headers decoded (the boundary aside), its body decoded."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    seen: list[Any] = []
    for part in parsed.walk():
        assert isinstance(part, EmailMessage)
        headers = [
            (name.lower(), str(value))
            for name, value in part.items()
            if name.lower() not in {"content-type", "mime-version", "content-transfer-encoding"}
        ]
        params = {k: v for k, v in part.get_params(failobj=[], header="content-type") if k != "boundary"}
        entry: list[Any] = [sorted(headers), part.get_content_type(), params, part.get_filename()]
        if not part.is_multipart():
            entry.append(part.get_payload(decode=True))
            if part.get_content_maintype() == "text" and part.get_filename() is None:
                entry.append(part.get_content())
        seen.append(entry)
    defects = [d for part in parsed.walk() if isinstance(part, Message) for d in part.defects]
    assert defects == []
    return seen


def assert_read_alike(outgoing: OutgoingMessage, sender: tuple[str, str] = SENDERS[0]) -> bytes:
    new, old = both(outgoing, sender)
    assert new.isascii()  # 7-bit: no 8BITMIME needed
    assert max(len(line) for line in new.split(b"\r\n")) <= 998
    assert b"\n" not in new.replace(b"\r\n", b"")  # CRLF only
    assert reading(new) == reading(old)
    return new


def templates() -> list[tuple[str, str, str]]:
    """(language/name, subject, body) of every built-in template, its Jinja text as it is."""
    found = []
    for language in LANGUAGES:
        for path in sorted((BUILT_IN / language).glob("*.txt")):
            head, _, body = path.read_text(encoding="utf-8").partition("\n\n")
            found.append((f"{language}/{path.stem}", head.removeprefix("Subject:").strip(), body))
    return found


@pytest.mark.parametrize(("subject", "body"), [t[1:] for t in templates()], ids=[t[0] for t in templates()])
@pytest.mark.parametrize("sender", SENDERS, ids=["ascii-name", "dash-in-name"])
def test_every_template_reads_as_the_email_package_wrote_it(
    subject: str, body: str, sender: tuple[str, str]
) -> None:
    assert_read_alike(message(subject, body), sender)
    assert_read_alike(message(subject, body, urgent=True, attachments=(INVITATION,)), sender)
    assert_read_alike(message(subject, body, attachments=(INVITATION, NOTES)), sender)
    assert_read_alike(message(subject, body, attachments=(NOTES,)), sender)


def test_the_templates_are_found() -> None:
    assert len(templates()) >= 2 * 13
    assert Path(BUILT_IN / "sv" / "early_warning.txt").exists()


@pytest.mark.parametrize(
    "subject",
    [
        "Möte",
        "",
        "A plain ASCII subject that is far too long to stay on one line of seventy-eight",
        "Påminnelse: uppföljning av SIP för ärende 5f0c7c1e – åtgärder som ska vara klara före mötet",
        "ÅÄÖ" * 60,
        "😀 emoji and 漢字",
    ],
)
def test_subjects_read_alike(subject: str) -> None:
    raw = assert_read_alike(message(subject, "Hej!\n"))
    assert str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"]) == subject


def test_a_subjects_ascii_words_stay_legible_in_the_raw_message() -> None:
    """Encoded as the email package encodes it ('Q'): a grep through the sink's files finds it."""
    raw = assert_read_alike(message("Kallelse: Resursgruppsmöte 12 mars", "Hej!\n"))
    assert b"Kallelse" in raw
    assert b"Resursgruppsm" in raw


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n",
        "ends without a newline",
        "trailing spaces   \nand a tab\t\n",
        ".a dot first\nFrom the start\n=3D and = signs\n",
        "a\r\nb\rc\n\n\n",
        "x" * 300 + "\n" + "å" * 200,
        "långt ord " * 60,
    ],
)
def test_bodies_read_alike(body: str) -> None:
    assert_read_alike(message("Ämne", body))


@settings(max_examples=150, deadline=None)
@given(
    subject=st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=120),
    body=st.text(st.characters(exclude_categories=["Cs"]), max_size=400),
    urgent=st.booleans(),
    invited=st.booleans(),
)
def test_generated_messages_read_alike(subject: str, body: str, urgent: bool, invited: bool) -> None:
    outgoing = message(subject, body, urgent=urgent, attachments=(INVITATION,) if invited else ())
    new = email_of(outgoing, SENDERS[1], _sender_line(SENDERS[1]), DATE)
    if isinstance(new, bytes):  # else: left to build_email (a subject it would fold its own way)
        assert_read_alike(outgoing, SENDERS[1])


def test_the_multipart_boundaries_are_the_email_packages_kind() -> None:
    new, _ = both(message("Möte", "Hej!\n", attachments=(INVITATION, NOTES)))
    boundaries = re.findall(rb'boundary="([^"]+)"', new)
    assert len(boundaries) == 2
    assert all(re.fullmatch(rb"={15}\d{19}==", b) for b in boundaries)


@pytest.mark.parametrize(
    "changes",
    [
        {"address": "asa@exämple.org"},  # SMTPUTF8: aiosmtplib's send_message asks for it
        {"address": '"quoted local"@example.org'},
        {"headers": {"Auto-Submitted": "auto-replied"}},  # replacing a header the channel sets
        {"headers": {"X-Note": "Anteckning åäö"}},
        {"subject": "Looks =?utf-8?b?w6U=?= encoded"},  # a reader decodes what it writes as it is
        {"subject": " leading blank"},  # a reader drops the email package's leading blanks
        {"attachments": (Attachment("bilaga – plan.pdf", "application/pdf", b"%PDF"),)},
    ],
    ids=[
        "non-ascii-address",
        "quoted-address",
        "replaced-header",
        "non-ascii-header",
        "encoded-word-in-subject",
        "leading-blank-in-subject",
        "non-ascii-filename",
    ],
)
def test_what_is_not_written_directly_is_left_to_the_email_package(changes: dict[str, Any]) -> None:
    outgoing = message(**{"subject": "Möte", "body": "Hej!\n", **changes})
    built = email_of(outgoing, SENDERS[0], _sender_line(SENDERS[0]), DATE)
    assert isinstance(built, EmailMessage)


@pytest.mark.parametrize(
    "changes",
    [{"address": "not an address"}, {"subject": "Injected\r\nBcc: someone@example.org"}],
    ids=["bad-address", "header-injection"],
)
def test_what_cannot_be_sent_still_raises(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        email_of(
            message(**{"subject": "Möte", "body": "Hej!\n", **changes}),
            SENDERS[0],
            _sender_line(SENDERS[0]),
            DATE,
        )
