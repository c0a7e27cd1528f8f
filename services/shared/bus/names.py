"""Which stream and subjects a relay publishes to and a consumer reads from.

Production uses the contracts' names (``VSS_CASE``, ``vss.case.>``, ``VSS_DLQ``); tests on
a shared server use names unique to the test, which is why they are parameters here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

from vss_contracts.subjects import (
    CASE_STREAM,
    CASE_SUBJECT_PREFIX,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_PREFIX,
    case_subject,
    dead_letter_subject,
)


@dataclass(frozen=True, slots=True)
class BusNames:
    stream: str = CASE_STREAM
    subject_prefix: str = CASE_SUBJECT_PREFIX
    dead_letter_stream: str = DEAD_LETTER_STREAM
    dead_letter_prefix: str = DEAD_LETTER_SUBJECT_PREFIX

    @property
    def subjects(self) -> str:
        return f"{self.subject_prefix}.>"

    def subject(self, case_id: UUID | str, event_name: str) -> str:
        return case_subject(case_id, event_name, prefix=self.subject_prefix)

    def dead_letter_subject(self, consumer: str, original_subject: str) -> str:
        return dead_letter_subject(consumer, original_subject, prefix=self.dead_letter_prefix)

    def sibling(self, stream: str, subject_prefix: str, prefix: str = "") -> BusNames:
        """Another service's stream beside this one, sharing its dead-letter stream.

        ``prefix`` (tests on a shared server) goes in front of both names.
        """
        return BusNames(
            stream=f"{prefix.upper()}{stream}",
            subject_prefix=f"{prefix.lower()}{subject_prefix}",
            dead_letter_stream=self.dead_letter_stream,
            dead_letter_prefix=self.dead_letter_prefix,
        )

    @classmethod
    def unique(cls) -> BusNames:
        """Names nobody else uses (tests on a shared server)."""
        tag = secrets.token_hex(4)
        return cls(
            stream=f"T{tag}_CASE",
            subject_prefix=f"t{tag}.vss.case",
            dead_letter_stream=f"T{tag}_DLQ",
            dead_letter_prefix=f"t{tag}.vss.dlq",
        )
