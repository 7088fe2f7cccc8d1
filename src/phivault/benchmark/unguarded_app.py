"""BENCHMARK ONLY: the phivault FHIR app with encryption, audit and access control OFF.

`phivault bench` measures each workload twice in the same run: against `phivault serve`
(every safeguard on) and against this app, to show what the safeguards cost. It is never a
way to run phivault:

- `serve` and `api/asgi.py` never import it, and no setting selects it; the bench starts
  it under uvicorn itself (`phivault.benchmark.servers.start_unguarded`).
- It opens only a data directory initialised with encryption off (`init_data_dir(...,
  encryption=False)`), which `serve` refuses; an encrypted directory (a real clinic's)
  is refused here, so it cannot serve real data in clear.
- Audit goes to `DiscardingAuditSink` (nothing is recorded) and `create_app` gets no
  `access=` (no bearer tokens, every caller trusted).

Environment: PHIVAULT_BENCH_DATA (the data directory), PHIVAULT_BENCH_KEY_FILE.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette

from phivault.api.app import create_app
from phivault.audit.events import AccessEvent
from phivault.benchmark.lifespan import close_vault_on_shutdown
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import ConfigError
from phivault.service import Service
from phivault.store.base import WriteTx
from phivault.vault import open_vault


class DiscardingAuditSink:
    """An AuditSink that records nothing: the "audit off" side of the comparison."""

    def record(self, event: AccessEvent, tx: WriteTx | None = None) -> None:
        del event, tx


def create_unguarded_bench_app() -> Starlette:
    try:
        data_dir = Path(os.environ["PHIVAULT_BENCH_DATA"])
        key_file = os.environ["PHIVAULT_BENCH_KEY_FILE"]
    except KeyError:
        raise ConfigError("the unguarded bench app is started by `phivault bench` only") from None
    # encryption=False opens only a directory created with encryption off (never a clinic's).
    vault = open_vault(data_dir, KeyFileKeySource(key_file), encryption=False)
    inner = vault.service
    service = Service(vault.store, DiscardingAuditSink(), inner.codec, inner.index_policy)
    app = create_app(service, vault.settings)  # no access=: no tokens, no policy
    return close_vault_on_shutdown(app, vault)
