"""Fixtures of the store tests."""

from __future__ import annotations

import pytest

from services.case.application.service import CaseService
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario


@pytest.fixture
def consented(service: CaseService, clock: FixedClock) -> CaseScenario:
    """A case opened, with two coordinators and consent (version 4): most commands apply."""
    scenario = CaseScenario(service, clock)
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    assert scenario.version == 4
    return scenario
