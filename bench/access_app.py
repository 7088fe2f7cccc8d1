"""The phivault FHIR app with access control on or off, for bench_access.py:

    BENCH_DATA=DIR BENCH_KEY_FILE=FILE BENCH_ACCESS=1|0 \
        uvicorn access_app:create --factory --app-dir bench

On: exactly what `phivault serve` runs (bearer tokens, the access policy). Off: the same
app without `access=` (every caller trusted), the baseline of the comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette

from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import open_vault


def create() -> Starlette:
    vault = open_vault(
        Path(os.environ["BENCH_DATA"]), KeyFileKeySource(os.environ["BENCH_KEY_FILE"])
    )
    access = None
    if os.environ.get("BENCH_ACCESS", "1") == "1":
        access = AccessControl.for_service(vault.service, vault.keyring)
    app = create_app(vault.service, vault.settings, access)
    return close_vault_on_shutdown(app, vault)
