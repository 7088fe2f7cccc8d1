"""$everything lists only the types the caller may read; the list is kept per principal
and is the same as deciding every storable type."""

from __future__ import annotations

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.fhir.resources import STORABLE_TYPES
from phivault.service import Context
from phivault.service.access_guard import type_allowed
from phivault.service.everything import readable_types
from phivault.vault import Vault


def _context(access: AccessControl, name: str, scope: str) -> Context:
    row = clients.register(access.store, name, clients.SCRIPT, scope)
    token, _ = access.system_token(row.client_id, scope, 300)
    principal = access.authenticate(token)
    return Context(actor=principal.subject, principal=principal)


def test_readable_types_follow_each_principals_scopes(vault: Vault) -> None:
    access = AccessControl.for_service(vault.service, vault.keyring)
    service = vault.service
    service.policy = access.policy
    wide = _context(access, "wide", "system/*.read")
    narrow = _context(access, "narrow", "system/Observation.read system/Patient.read")
    every = sorted(t for t in STORABLE_TYPES if type_allowed(service, wide, "read", t))
    assert "Observation" in every and len(every) > 100
    assert readable_types(service, wide) == every
    assert readable_types(service, narrow) == ["Observation", "Patient"]
    kept = readable_types(service, narrow)
    kept.append("Condition")  # a caller's copy: the kept list is not changed
    assert readable_types(service, narrow) == ["Observation", "Patient"]
    assert readable_types(service, wide) == every
