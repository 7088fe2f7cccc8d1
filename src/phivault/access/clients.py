"""Registered OAuth clients: SMART apps (public, PKCE) and backend services
(client_credentials with private_key_jwt, each with its public JWKS)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from phivault.access.scopes import parse_scopes
from phivault.errors import BadRequest
from phivault.store.access_sql import AccessStore, ClientRow

PUBLIC = "public"
BACKEND = "backend"
SCRIPT = "script"  # tokens minted by `phivault token issue` with the data directory's key


def register(
    store: AccessStore,
    name: str,
    kind: str,
    scope: str,
    *,
    redirect_uris: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
) -> ClientRow:
    parse_scopes(scope)  # refuses malformed scopes
    if kind not in (PUBLIC, BACKEND, SCRIPT):
        raise BadRequest("client kind must be public, backend or script")
    if kind == PUBLIC and not redirect_uris:
        raise BadRequest("a public client needs at least one redirect URI")
    if kind == BACKEND and not (jwks and isinstance(jwks.get("keys"), list)):
        raise BadRequest("a backend client needs its public JWKS")
    existing = store.client_by_name(name)
    row = ClientRow(
        client_id=existing.client_id if existing else str(uuid.uuid4()),
        name=name,
        kind=kind,
        redirect_uris=json.dumps(redirect_uris or []),
        scope=" ".join(scope.split()),
        jwks=json.dumps(_public_only(jwks)) if jwks else None,
        disabled=0,
        created=existing.created if existing else time.time(),
    )
    store.put_client(row)
    return row


def redirect_uris(row: ClientRow) -> list[str]:
    found = json.loads(row.redirect_uris)
    return [u for u in found if isinstance(u, str)]


def client_jwks(row: ClientRow) -> dict[str, Any]:
    found = json.loads(row.jwks) if row.jwks else {"keys": []}
    return found if isinstance(found, dict) else {"keys": []}


_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def _public_only(jwks: dict[str, Any]) -> dict[str, Any]:
    """Never store a private key a client sent by mistake."""
    keys = [
        {k: v for k, v in key.items() if k not in _PRIVATE_MEMBERS}
        for key in jwks.get("keys", [])
        if isinstance(key, dict)
    ]
    return {"keys": keys}
