"""The bench apps' lifespan: start-up and shutdown as `phivault serve` does them (the
start-up heap frozen; the vault closed when the server stops)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from phivault.api.heap import freeze_startup_heap
from phivault.vault import Vault


def close_vault_on_shutdown(app: Starlette, vault: Vault) -> Starlette:
    """Give `app` a lifespan that freezes the start-up heap, as serve's does (both sides
    of a bench alike), and closes `vault` (store, audit appender) on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        freeze_startup_heap()
        try:
            yield
        finally:
            vault.close()

    app.router.lifespan_context = lifespan
    return app
