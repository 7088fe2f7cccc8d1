"""ASGI entry point for uvicorn workers: opens the vault named by the environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from phivault.access.runtime import AccessControl
from phivault.api import connection_limits
from phivault.api.app import create_app
from phivault.api.heap import freeze_startup_heap
from phivault.backup.integrity import CHECKED_ENV
from phivault.backup.schedule import start_scheduled_backups
from phivault.config import resolve_data_dir
from phivault.detect.runtime import start_detector_task
from phivault.vault import key_source, open_vault


def create() -> Starlette:
    # `phivault serve` opened (and fully checked) the directory just before starting us.
    checked = os.environ.get(CHECKED_ENV)
    vault = open_vault(resolve_data_dir(None), key_source(), checked=checked)
    connection_limits.configure(vault.settings)  # header deadline and size (serve's protocol)
    # Access control on: every FHIR route needs a bearer token, the policy decides.
    access = AccessControl.for_service(vault.service, vault.keyring)
    app = create_app(vault.service, vault.settings, access)
    backups = start_scheduled_backups(vault)  # None unless [backup] interval_minutes is set
    detector = start_detector_task(vault)  # tails the audit log; None if [alerts] turns it off

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        freeze_startup_heap()  # everything above lives as long as the process
        try:
            yield
        finally:
            if backups is not None:
                backups.stop()
            if detector is not None:
                detector.stop()
            vault.close()

    app.router.lifespan_context = lifespan
    return app
