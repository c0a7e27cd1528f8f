"""VSS public contracts: case event models, the CloudEvents envelope, subjects, schemas.

A subscriber in another organisation needs only this package::

    from vss_contracts import CloudEvent
    event = CloudEvent.model_validate_json(message.data)
    fact = event.typed_data()   # e.g. a SipDecided, upcast from older versions
"""

from vss_contracts import case_events
from vss_contracts.case_events import CASE_EVENTS, CaseEventData
from vss_contracts.envelope import CloudEvent, dataschema_for
from vss_contracts.identity import InvalidPersonalIdentityNumber, normalise_personal_identity_number
from vss_contracts.registry import EVENT_TYPES, UnknownEventType, decode_event, upcast
from vss_contracts.subjects import CASE_STREAM, CASE_SUBJECT_PREFIX, CASE_SUBJECTS, case_subject

__all__ = [
    "CASE_EVENTS",
    "CASE_STREAM",
    "CASE_SUBJECTS",
    "CASE_SUBJECT_PREFIX",
    "EVENT_TYPES",
    "CaseEventData",
    "CloudEvent",
    "InvalidPersonalIdentityNumber",
    "UnknownEventType",
    "case_events",
    "case_subject",
    "dataschema_for",
    "decode_event",
    "normalise_personal_identity_number",
    "upcast",
]
