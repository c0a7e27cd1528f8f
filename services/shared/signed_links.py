"""One way to sign a link that is its own credential (ADR 0016, ADR 0020).

A signature is HMAC-SHA256, under a service's link key, of a purpose tag and the link's
parts, one a line, in URL-safe base64 without padding. The purpose tag (``vss-plan-link-v1``,
``vss-meeting-answer-v1``) keeps a signature for one kind of link from opening another, even
under the same key. A link is a pure function of its parts and the key: the notifications
service writes the same link on every replay, and the service that checks it needs no store.

Used by the plan links (:mod:`services.shared.plan_links`) and the meeting answer links below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode
from uuid import UUID

ANSWER_PURPOSE = "vss-meeting-answer-v1"
ANSWER_LINK_PRINCIPAL = "answer_link"  # the access log's principal of a request through an answer link


def sign_parts(key: bytes, purpose: str, *parts: str) -> str:
    """The signature of ``parts`` for ``purpose`` (no part may hold a line break)."""
    if any("\n" in part for part in (purpose, *parts)):
        raise ValueError("a signed part holds no line break")
    message = "\n".join((purpose, *parts)).encode()
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode().rstrip("=")


def verify_parts(key: bytes, signature: str, purpose: str, *parts: str) -> bool:
    """Whether ``signature`` is the key's signature of ``parts`` (constant time)."""
    try:
        expected = sign_parts(key, purpose, *parts)
    except ValueError:
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
    return hmac.compare_digest(expected.encode(), signature.encode())


# ------------------------------------------------------------------------- meeting answers
def answer_signature(key: bytes, case_id: UUID | str, meeting_id: UUID | str, invitee_id: str) -> str:
    """The answer key of one invitee of one meeting: it opens that invitee's answer only."""
    return sign_parts(key, ANSWER_PURPOSE, str(UUID(str(case_id))), str(UUID(str(meeting_id))), invitee_id)


def verify_answer(
    key: bytes, case_id: UUID | str, meeting_id: UUID | str, invitee_id: str, signature: str
) -> bool:
    try:
        case, meeting = str(UUID(str(case_id))), str(UUID(str(meeting_id)))
    except ValueError:
        return False
    return verify_parts(key, signature, ANSWER_PURPOSE, case, meeting, invitee_id)


def answer_path(case_id: UUID | str, meeting_id: UUID | str) -> str:
    return f"/v1/cases/{UUID(str(case_id))}/meetings/{UUID(str(meeting_id))}/answer"


def answer_link(
    base_url: str, key: bytes, case_id: UUID | str, meeting_id: UUID | str, invitee_id: str
) -> str:
    """The invitee's own link to answer the invitation (the meetings API's public URL)."""
    query = urlencode({"invitee": invitee_id, "sig": answer_signature(key, case_id, meeting_id, invitee_id)})
    return f"{base_url.rstrip('/')}{answer_path(case_id, meeting_id)}?{query}"
