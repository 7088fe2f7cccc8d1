"""The bench apps' one shutdown step: close the vault they opened when the server stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from phivault.vault import Vault


def close_vault_on_shutdown(app: Starlette, vault: Vault) -> Starlette:
    """Give `app` a lifespan that closes `vault` (store, audit appender) on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            vault.close()

    app.router.lifespan_context = lifespan
    return app
