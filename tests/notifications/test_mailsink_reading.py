"""The mail sink's quick readings (an SMTP path, a message's Message-ID) agree with the
parsers they replace: aiosmtpd's own and the email package's."""

from __future__ import annotations

import asyncio
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
from aiosmtpd.smtp import SMTP

from services.notifications.infrastructure.mailsink import _SMTP, _message_id


class _Nothing:
    pass


@pytest.mark.parametrize(
    "arg",
    [
        "<noreply@vss.example>",
        "<anna.k@example.org> SIZE=1234 BODY=8BITMIME",
        "  <a+tag@sub.example.org>  SMTPUTF8",
        "<o'brien@example.org>",
        "<>",
        "noreply@vss.example",
        '<"quoted local"@example.org>',
        "<a..b@example.org>",
        "<åsa@exämple.org> SMTPUTF8",
        "<@relay.example:anna@example.org>",
        "<" + "x" * 70 + "@example.org>",
        "<a@example.org> (a comment) SIZE=10",
        "<a@example.org>\tSIZE=10  ",
        "",
    ],
)
def test_a_path_is_read_as_aiosmtpd_reads_it(arg: str) -> None:
    async def both() -> tuple[object, object]:
        ours = _SMTP(_Nothing(), loop=asyncio.get_running_loop())
        theirs = SMTP(_Nothing(), loop=asyncio.get_running_loop())
        return ours._getaddr(arg), theirs._getaddr(arg)

    ours, theirs = asyncio.run(both())
    assert ours == theirs


@pytest.mark.parametrize(
    "content",
    [
        b"From: a\r\nMessage-ID: <x@y>\r\n\r\nbody",
        b"From: a\r\nmessage-id:   <x@y>  \r\nMessage-ID: <z>\r\n\r\n",
        b"Subject: s\r\n\r\nMessage-ID: <in-the-body@x>\r\n",
        b"Message-ID:\r\n <folded@x>\r\nTo: b\r\n\r\n",
        b"X-Message-ID: <not-this@x>\r\n\r\n",
        b"Message-ID: <\xc3\xa5@x>\n\nbody",
        b"Message-ID: <only-headers@x>\r\n",
        b"",
    ],
)
def test_the_message_id_is_read_as_the_email_package_reads_it(content: bytes) -> None:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(content)
    assert _message_id(content) == str(parsed.get("Message-ID", "")).strip()
