"""An e-mail's bytes written directly, for the messages VSS sends (the common case).

The stdlib's ``EmailMessage`` with ``policy.SMTP`` (``build_email``), flattened by
aiosmtplib, took about a third of the notifications process's CPU: each header is parsed
into a tree and folded again. The messages VSS sends are simple: a plain-text body, maybe
a calendar invitation and files, a few ASCII headers and a subject. :func:`email_bytes`
writes those bytes once, 7-bit (quoted-printable text, base64 files, an RFC 2047 subject),
read by any client as ``build_email``'s message: the same headers decoded, the same parts,
bodies, types, parameters and file names (``tests/notifications/test_mime.py`` compares
them). Anything it is not sure of (a non-ASCII address, an unusual header, a parameter to
quote) gives ``None``: the caller builds that one with the email package, which also
refuses what cannot be sent.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from services.notifications.application.channels import OutgoingMessage

__all__ = ["email_bytes"]

# An address written as it is: dot-atoms on both sides (no quoting, no comments).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# A parameter value or file name quoted as it is: printable ASCII but '"' and '\'.
_QUOTABLE = re.compile(r"[ !#-\[\]-~]*")
_TOKEN = re.compile(r"[!-~]+")
_PARAMETER = re.compile(r"[a-z0-9_.-]+")

# Headers the channel sets itself: a message's extra headers of these names are dropped
# (here and in the channel's fallback builder).
OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
# Set before the extras, which build_email lets replace them: such a message is left to it.
_SET = frozenset({"auto-submitted", "importance", "x-priority"})

_LINE = 78  # RFC 5322's recommended line length: a longer ASCII subject is encoded and split
_WORD = 55  # characters of encoded text per word: with '=?utf-8?q?' and '?=', 76 on a line
# RFC 2047 'Q': these stand for themselves in an encoded word, a space is '_'
_Q = {c: c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"} | {" ": "_"}
_LIMIT = 998  # RFC 5322's line limit


def email_bytes(
    message: OutgoingMessage,
    sender: bytes,
    date: datetime,
    content_types: Sequence[tuple[str, str, dict[str, str]]],
) -> bytes | None:
    """The message's bytes (CRLF line endings), or None if it is not one written here.

    ``sender`` is the ``From:`` line, folded once by the email package; ``content_types``
    the attachments' parsed content types, in order.
    """
    subject = _subject(message.subject)
    if subject is None or not _ADDRESS.fullmatch(message.address):
        return None
    message_id = message.message_id
    if not (message_id.isascii() and _TOKEN.fullmatch(message_id) and len(message_id) < _LIMIT - 12):
        return None
    lines = [
        sender,
        b"To: " + message.address.encode(),
        subject,
        b"Date: " + format_datetime(date.astimezone(UTC)).encode(),
        b"Message-ID: " + message_id.encode(),
        b"Auto-Submitted: auto-generated",
    ]
    if message.urgent:
        lines += (b"Importance: high", b"X-Priority: 1")
    seen: set[str] = set()
    for name, value in message.headers.items():
        lowered = name.lower()
        if lowered in OWN_HEADERS:
            continue  # the channel's own, as build_email skips them
        if lowered in _SET or lowered in seen or not _HEADER_NAME.fullmatch(name):
            return None  # replacing a header: left to the email package
        if not (value.isascii() and value.isprintable() and value == value.strip()) or "=?" in value:
            return None
        if len(name) + 2 + len(value) > _LIMIT:
            return None
        seen.add(lowered)
        lines.append(f"{name}: {value}".encode())
    lines.append(b"MIME-Version: 1.0")

    try:
        text = _text_part(message.body)
    except UnicodeError:
        return None
    invitations: list[list[bytes]] = []
    files: list[list[bytes]] = []
    for attachment, (maintype, subtype, params) in zip(message.attachments, content_types, strict=True):
        content_type = _content_type(maintype, subtype, params)
        if content_type is None or not _QUOTABLE.fullmatch(attachment.filename) or not attachment.filename:
            return None
        encoded = base64.encodebytes(attachment.content).replace(b"\n", b"\r\n")
        if (maintype, subtype) == ("text", "calendar"):
            invitations.append([content_type, b"Content-Transfer-Encoding: base64", b"", encoded])
        disposition = f'Content-Disposition: attachment; filename="{attachment.filename}"'.encode()
        files.append([content_type, b"Content-Transfer-Encoding: base64", disposition, b"", encoded])

    if not files:
        return b"\r\n".join([*lines, *text])
    body = text
    if invitations:
        body = _multipart("alternative", [text, *invitations])
    return b"\r\n".join([*lines, *_multipart("mixed", [body, *files])])


def _subject(subject: str) -> bytes | None:
    """The ``Subject:`` line: as it is if short ASCII, else RFC 2047 'Q' encoded words (its
    ASCII words stay legible in the raw message, as the email package writes them)."""
    if not subject.isprintable() or "=?" in subject:  # CR, LF (a header injected), controls
        return None  # '=?' reads as an encoded word where the email package writes it as it is
    if subject[:1].isspace():  # a reader drops the email package's leading blanks: its way, then
        return None
    if subject.isascii() and subject == subject.strip() and len(subject) + 9 <= _LINE:
        return b"Subject: " + subject.encode()
    words: list[str] = []
    word = ""
    for character in subject:
        try:
            encoded = _Q.get(character) or "".join(f"={b:02X}" for b in character.encode("utf-8"))
        except UnicodeError:  # a lone surrogate
            return None
        if len(word) + len(encoded) > _WORD:  # never a character split between two words
            words.append(word)
            word = ""
        word += encoded
    words.append(word)
    return b"Subject: " + "\r\n ".join(f"=?utf-8?q?{w}?=" for w in words).encode()


def _text_part(body: str) -> list[bytes]:
    """The text body's headers, blank line and quoted-printable lines, as build_email makes
    it (lines split and ended with LF first), CRLF line endings."""
    lines = body.encode("utf-8").splitlines()
    data = b"\n".join(lines) + b"\n"
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return [
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        encoded.replace(b"\n", b"\r\n"),
    ]


def _content_type(maintype: str, subtype: str, params: dict[str, str]) -> bytes | None:
    if not (_TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype)):
        return None
    text = f"Content-Type: {maintype}/{subtype}"
    for key, value in params.items():
        if not (_PARAMETER.fullmatch(key) and _QUOTABLE.fullmatch(value)):
            return None
        text += f'; {key}="{value}"'
    if len(text) > _LIMIT:
        return None
    return text.encode()


def _multipart(subtype: str, parts: Sequence[list[bytes]]) -> list[bytes]:
    """A multipart entity's lines: its Content-Type, then each part between boundaries.

    The boundary is the email package's kind ('=' x15, 19 digits, '=='): no base64 or
    quoted-printable line can hold it, as neither writes '==' after a line's start."""
    boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}==".encode()
    lines = [b"Content-Type: multipart/" + subtype.encode() + b';\r\n boundary="' + boundary + b'"', b""]
    for part in parts:
        lines.append(b"--" + boundary)
        lines.extend(part)
    lines.append(b"--" + boundary + b"--")
    lines.append(b"")
    return lines
