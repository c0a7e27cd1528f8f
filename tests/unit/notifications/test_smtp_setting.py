"""VSS_SMTP_CONNECTIONS: 1 to 16 SMTP connections, 4 unless set (ADR 0025)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.notifications.settings import NotificationsSettings


def test_four_connections_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VSS_SMTP_CONNECTIONS", raising=False)
    assert NotificationsSettings().smtp_connections == 4
    monkeypatch.setenv("VSS_SMTP_CONNECTIONS", "16")
    assert NotificationsSettings().smtp_connections == 16


@pytest.mark.parametrize("value", ["0", "17", "many"])
def test_a_number_of_connections_out_of_range_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VSS_SMTP_CONNECTIONS", value)
    with pytest.raises(ValidationError, match="smtp_connections"):
        NotificationsSettings()
