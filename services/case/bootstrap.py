"""The case service's composition root: the one place that builds real adapters."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from services.case.application.ports import Clock
from services.case.application.service import CaseService
from services.case.domain.commands import CasePolicy
from services.case.entrypoints.http import create_app
from services.case.infrastructure.clock import SystemClock
from services.case.infrastructure.store import CaseEventStore, StoreConfig
from services.case.settings import CaseSettings
from services.shared.auth import TokenService
from services.shared.settings import AuthSettings


@dataclass
class CaseServiceParts:
    settings: CaseSettings
    store: CaseEventStore
    service: CaseService
    tokens: TokenService
    app: FastAPI

    def close(self) -> None:
        self.store.close()


def bootstrap(
    settings: CaseSettings | None = None,
    *,
    auth: AuthSettings | None = None,
    clock: Clock | None = None,
) -> CaseServiceParts:
    settings = settings or CaseSettings()
    store = CaseEventStore(StoreConfig(settings.store_url()))
    store.check_migrated()
    service = CaseService(store, clock or SystemClock(), CasePolicy(settings.follow_up_max_months))
    tokens = TokenService.from_settings(auth or AuthSettings(), settings.data_dir)
    return CaseServiceParts(settings, store, service, tokens, create_app(service, tokens))
