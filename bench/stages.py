"""Where a served request's CPU goes, stage by stage (bench only).

`instrument(app, path)` wraps a fixed list of phivault functions (STAGES) so that each call
adds the calling thread's CPU time (`time.thread_time`) to its stage, and writes the totals
and call counts to `path` as JSON when the app shuts down. bench/crypto_app.py calls it when
`BENCH_STAGES` names such a file; bench_crypto.py `--stages` serves the app with
encryption on and off that way, posts the same Patients to both, and subtracts.

Stages nest (`create` holds all the others): they are not a partition. What one stage
costs is its own row; what a request costs beyond the listed stages is `create` minus the
outermost ones. Each wrapped call also pays for two clock reads, on both sides alike.
Thread CPU counts a stage's work done in C with the GIL released (SQLite, AES) as well.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

# (module, class, method, stage): outermost first.
STAGES = (
    ("phivault.service.core", "Service", "create", "create (all of it)"),
    ("phivault.service.core", "Service", "_validate", "FHIR validation"),
    ("phivault.service.core", "Service", "prepare", "prepare: index rows, key check, blinding"),
    ("phivault.crypto.blind_index", "BlindIndexPolicy", "transform", "  of which blind transform"),
    ("phivault.crypto.codec", "KeyRingCodec", "prepare", "  of which data key check"),
    ("phivault.service.core", "Service", "_new_version", "new version: body and seal"),
    ("phivault.crypto.codec", "KeyRingCodec", "seal", "  of which seal, with the key row"),
    ("phivault.store.common", "SqlWriteTx", "append_version", "store: version and index rows"),
    ("phivault.audit.log", "AuditLog", "record", "audit entry"),
    ("phivault.store.sqlite", "SqliteStore", "_maybe_commit", "group commit (SQLite)"),
)


def _timed(
    fn: Callable[..., Any],
    stage: str,
    cpu: dict[str, float],
    calls: dict[str, int],
    lock: threading.Lock,
) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            used = time.thread_time() - began
            with lock:
                cpu[stage] = cpu.get(stage, 0.0) + used
                calls[stage] = calls.get(stage, 0) + 1

    return timed


def instrument(app: Starlette, path: Path) -> None:
    """Wrap every stage in this process; when `app` shuts down, write
    {"cpu_s": {stage: seconds}, "calls": {stage: count}} to `path`."""
    cpu: dict[str, float] = {}
    calls: dict[str, int] = {}
    lock = threading.Lock()
    for module, cls_name, method, stage in STAGES:
        cls = getattr(importlib.import_module(module), cls_name)
        setattr(cls, method, _timed(getattr(cls, method), stage, cpu, calls, lock))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(served: Starlette) -> AsyncIterator[None]:
        async with inner(served):
            try:
                yield
            finally:
                with lock:
                    path.write_text(json.dumps({"cpu_s": cpu, "calls": calls}))

    app.router.lifespan_context = lifespan


def per_request_us(path: Path) -> dict[str, float]:
    """A finished server's stages (instrument's file): CPU µs of each per request, a
    request being a call of the outermost stage."""
    found = json.loads(path.read_text())
    requests = max(1, found["calls"].get(STAGES[0][3], 0))
    return {stage: found["cpu_s"].get(stage, 0.0) * 1e6 / requests for *_, stage in STAGES}
