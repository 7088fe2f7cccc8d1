"""The phivault FHIR app with access control on or off, for bench_access.py:

    BENCH_DATA=DIR BENCH_KEY_FILE=FILE BENCH_ACCESS=1|token|0 \
        uvicorn access_app:create --factory --app-dir bench

1 (on): exactly what `phivault serve` runs (bearer tokens, the access policy). token: the
bearer tokens checked as on, but the policy allows every interaction (`AllowAll`, as with
access control off): what the policy alone costs is on against this. 0 (off): the same app
without `access=` (every caller trusted), the baseline of the comparison.
MEASUREMENT ONLY: `phivault serve` never runs the token mode.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette

from phivault.access.policy import AllowAll
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import Vault, open_vault


def access_control(vault: Vault, mode: str) -> AccessControl | None:
    """The access control of a BENCH_ACCESS mode (above) over `vault`."""
    if mode not in ("1", "token"):
        return None
    access = AccessControl.for_service(vault.service, vault.keyring)
    if mode == "token":
        access.policy = AllowAll()  # type: ignore[assignment]
    return access


def create() -> Starlette:
    vault = open_vault(
        Path(os.environ["BENCH_DATA"]), KeyFileKeySource(os.environ["BENCH_KEY_FILE"])
    )
    access = access_control(vault, os.environ.get("BENCH_ACCESS", "1"))
    app = create_app(vault.service, vault.settings, access)
    return close_vault_on_shutdown(app, vault)
