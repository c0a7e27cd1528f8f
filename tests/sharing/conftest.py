"""Fixtures of the sharing tests."""

from tests.bus.conftest import run_relay  # noqa: F401 - a fixture these tests use
