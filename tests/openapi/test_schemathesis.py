"""Schemathesis against the four APIs' OpenAPI documents, in process (ASGI), with a valid token.

Every generated request (valid and invalid by the schema) must get no 5xx, a documented
status code and content type, and a body and headers matching the documented schema.

Two rules of the APIs cannot be said in JSON Schema, so they are bent the documented way:
- dates lie in a window around today (VSS_DATE_WINDOW_*): schema-valid dates are drawn from
  a range inside every test service's window, so a valid request is not refused for its date;
- text refuses control characters: a valid request refused with 422 whose every error is the
  rule ``date_window`` or ``control_character`` (or another rule in RULES_BEYOND_THE_SCHEMA,
  or a reused Idempotency-Key) is accepted by our variant of the ``positive_data_acceptance``
  check; any other refusal of valid data still fails it.

A path's case id that is a well-formed UUID is replaced by the id of a case that exists, so
the operations reach the case's rules and data instead of answering 404 only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.case.application.service import CaseService
from services.case.entrypoints.http import create_app as case_app
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import Rules
from services.meetings.entrypoints.http import FeedLinks, MeetingsApiDependencies
from services.meetings.entrypoints.http import create_app as meetings_app
from services.meetings.infrastructure.store import MeetingStore
from services.meetings.infrastructure.store import migrate as migrate_meetings
from services.notifications.entrypoints.http import NotificationsApiDependencies
from services.notifications.entrypoints.http import create_app as notifications_app
from services.projections.application.queries import QueryPolicy
from services.projections.entrypoints.http import QueryDependencies
from services.projections.entrypoints.http import create_app as query_app
from services.projections.infrastructure.serving import ServedGenerations
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.meetings.feed import REGION_PSYCH, SOCIAL, CaseFeed
from tests.notifications.support import World
from tests.notifications.test_service import _warning_world
from tests.support.actors import ACTORS
from tests.support.clock import FixedClock
from tests.support.readmodels import project
from tests.support.scenario import CaseScenario

TOKENS = TokenService(key="test-secret-" + "s" * 40, algorithm="HS256", issuer="vss", audience="vss")
# Inside the default window (ten years back, five ahead) of every clock below (2025-03 to 2026-01).
EARLIEST, LATEST = date(2024, 1, 1), date(2027, 12, 31)
schemathesis.openapi.format("date", st.dates(EARLIEST, LATEST).map(date.isoformat))
schemathesis.openapi.format(
    "date-time",
    st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)).map(
        datetime.isoformat
    ),
)
# Email addresses on special-use domains (example.com, .test …) are refused by the validator.
schemathesis.openapi.format("email", st.from_regex(r"\A[a-z]{1,12}\.[a-z]{1,12}@[a-z]{2,12}\.se\Z"))
# Rules a JSON Schema cannot state, as (field suffix, rule): the date window, control
# characters in text, the check digit and birth date of a personal identity number, and a
# statistics period's order and length (two parameters together).
RULES_BEYOND_THE_SCHEMA = frozenset(
    {
        ("", "date_window"),
        ("", "control_character"),
        ("personal_identity_number", "value_error"),
        ("query.from", "from_not_after_to"),
        ("query.from", "period_at_most_ten_years"),
    }
)


def _beyond_the_schema(error: dict[str, Any]) -> bool:
    field, rule = str(error.get("field", "")), error.get("rule")
    return any(field.endswith(suffix) and rule == known for suffix, known in RULES_BEYOND_THE_SCHEMA)


@schemathesis.check
def valid_data_accepted_but_for_rules_beyond_the_schema(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """``positive_data_acceptance``, except a 422 naming only the rules JSON Schema cannot say."""
    if response.status_code == 422 and case.meta is not None and case.meta.generation.mode.is_positive:
        problem = json.loads(response.content)
        if problem.get("rule") == "idempotency_key_reused":  # the key came before, with another request
            return None
        errors = problem.get("errors") or []
        if errors and all(_beyond_the_schema(e) for e in errors):
            return None
    return positive_data_acceptance(ctx, response, case)


def token(user_id: str, organisation: str, principal: str, *roles: str) -> dict[str, str]:
    minted = TOKENS.mint(
        user_id=user_id, organisation_id=organisation, principal=principal, roles=list(roles)
    )
    return {"Authorization": f"Bearer {minted}"}


def _is_uuid(value: Any) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


def fuzz(
    app: Any, headers: dict[str, str], case_id: UUID | str, *, examples: int = 3, head: int | None = None
) -> None:
    """Every operation of ``app``, with data valid and invalid by its schema; fail naming each one.

    ``head``: the last log position the service reflects; a ``?position=`` past it (but in its
    documented range) is brought back to it (a wait for a position never written ends in the
    documented 503, after the wait limit).
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid OpenAPI
        operations.append(result.ok())
    assert operations
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case[Any]) -> None:
                if _is_uuid((case.path_parameters or {}).get("case_id")):
                    case.path_parameters = {**(case.path_parameters or {}), "case_id": str(case_id)}
                position = (case.query or {}).get("position")
                if head is not None and isinstance(position, int) and head < position < 2**63:
                    case.query = {**(case.query or {}), "position": head}
                # The valid token, unless the case is about a malformed one (as schemathesis' auth does).
                negated = case.operation.schema.is_security_param_negated(case)
                response = case.call_and_validate(
                    headers={**dict(case.headers or {}), **({} if negated else headers)},
                    excluded_checks=[positive_data_acceptance],
                    additional_checks=[valid_data_accepted_but_for_rules_beyond_the_schema],
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing of it can be invalid (no parameters)
            except (Exception, BaseExceptionGroup) as failure:  # reported below, with every other one
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert not failures, "\n\n".join(failures)
    assert any(200 <= status < 300 for status in statuses), statuses  # some requests got through
    print(f"{schema.title}: {len(operations)} operations, answers by status {sorted(statuses.items())}")


# ------------------------------------------------------------------------------- case API
@pytest.fixture
def case_store(tmp_path: Path) -> Iterator[CaseEventStore]:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    yield store
    store.close()


@pytest.fixture
def opened_case(case_store: CaseEventStore) -> CaseScenario:
    clock = FixedClock()
    scenario = CaseScenario(CaseService(case_store, clock), clock)
    scenario.to_first_sip()
    return scenario


def test_case_api(tmp_path: Path, opened_case: CaseScenario) -> None:
    region = ACTORS.region
    headers = token(region.user_id, region.organisation_id, region.principal.value, "coordinator")
    assert opened_case.case_id is not None
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")
    fuzz(case_app(opened_case.service, TOKENS, access_log), headers, opened_case.case_id)


# --------------------------------------------------------------------------- meetings API
def test_meetings_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meetings.db'}"
    migrate_meetings(url)
    store = MeetingStore(url)
    try:
        clock = FixedClock(datetime(2026, 1, 5, 8, 0, tzinfo=UTC))
        service = MeetingsService(store, Rules(), WorkingDays(), clock)
        feed = CaseFeed(service)
        day = date(2026, 1, 5)
        feed.open(day)
        feed.assign(day)
        feed.consent(day, SOCIAL, REGION_PSYCH)
        feed.sip(day, 1, follow_up=date(2026, 3, 2))
        deps = MeetingsApiDependencies(
            service=service,
            tokens=TOKENS,
            organiser=("VSS Göteborg", "vss@goteborg.example.se"),
            feed_links=FeedLinks(b"calendar-link-test-key", "https://vss.example.se/meetings"),
            access_log=AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}"),
        )
        headers = token("sara", SOCIAL.id, "municipality", "coordinator")
        fuzz(meetings_app(deps), headers, feed.case_id, head=service.applied_log_position())
    finally:
        store.close()


# ---------------------------------------------------------------------- notifications API
def test_notifications_api(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        _warning_world(world)
        world.deliver()
        deps = NotificationsApiDependencies(
            service=world.service,
            tokens=TOKENS,
            access_log=AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}"),
        )
        headers = token("sara", SOCIAL.id, "municipality", "coordinator")
        fuzz(notifications_app(deps), headers, world.feed.case_id)
    finally:
        world.close()


# ----------------------------------------------------------------------------- query API
def test_query_api(tmp_path: Path, case_store: CaseEventStore, opened_case: CaseScenario) -> None:
    """The read models of one case at its first SIP, projected from the case store's log."""
    location, head = project(case_store, tmp_path)
    deps = QueryDependencies(
        served=ServedGenerations(location),
        access_log=AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}"),
        tokens=TOKENS,
        today=opened_case.clock.today,
        wait_limit=0.05,
        policy=QueryPolicy(),
        association_of=lambda organisation_id: None,
    )
    region = ACTORS.region
    headers = token(region.user_id, region.organisation_id, region.principal.value, "coordinator", "analyst")
    assert opened_case.case_id is not None
    try:
        fuzz(query_app(deps), headers, opened_case.case_id, head=head)
    finally:
        location.close()
