"""The phivault FHIR app over `open_vault(encryption=...)`, for bench_crypto.py.

`phivault serve` cannot turn encryption off (by design), so the comparison runs this
factory under uvicorn instead, with the same settings as `serve`:

    BENCH_DATA=DIR BENCH_KEY_FILE=FILE BENCH_ENCRYPTION=1|0 \
        uvicorn crypto_app:create --factory --app-dir bench

With `BENCH_STAGES=FILE` the process also accounts CPU per stage of a create (stages.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette

import stages
from phivault.api.app import create_app
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import open_vault


def create() -> Starlette:
    vault = open_vault(
        Path(os.environ["BENCH_DATA"]),
        KeyFileKeySource(os.environ["BENCH_KEY_FILE"]),
        encryption=os.environ.get("BENCH_ENCRYPTION", "1") == "1",
    )
    app = close_vault_on_shutdown(create_app(vault.service, vault.settings), vault)
    if os.environ.get("BENCH_STAGES"):
        stages.instrument(app, Path(os.environ["BENCH_STAGES"]))
    return app
