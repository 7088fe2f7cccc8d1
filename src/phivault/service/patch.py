"""The PATCH interaction: read the current version, apply a JSON Patch, then store the
result like an update (validated, versioned, audited as "patch", history method PATCH).

The patch is applied and the result prepared (index rows, compartment key) outside the
write transaction, because preparing may create a data key, which is a write of its own.
Inside the transaction the version the patch was applied to must still be current;
otherwise the patch is applied again to the newer version (or, with If-Match, refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from phivault.errors import Conflict, Gone, MalformedJson, NotFound, VersionConflict
from phivault.fhir import json as fhir_json
from phivault.fhir import resources as fhir_types
from phivault.fhir.patch import JsonPatchDocument, apply_patch, parse_patch
from phivault.service.access_guard import require, require_type

if TYPE_CHECKING:
    from phivault.service.core import Context, Prepared, Service, WriteResult

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class PreparedPatch:
    prepared: Prepared
    base_version: int  # the version the patch was applied to


def patch_resource(
    service: Service,
    ctx: Context,
    rtype: str,
    rid: str,
    operations: object,
    *,
    if_match: int | None,
) -> WriteResult:
    fhir_types.check_type(rtype)
    fhir_types.check_id(rid)
    patch = parse_patch(operations)
    for _attempt in range(MAX_ATTEMPTS):
        ready = prepare_patch(service, ctx, rtype, rid, patch, if_match)
        with service.store.write() as tx:
            tx.lock_resource(rtype, rid)
            current = tx.current(rtype, rid)
            if current is not None and current.version == ready.base_version:
                return service._write(
                    ctx, tx, ready.prepared, expected=ready.base_version, action="patch"
                )
        if if_match is not None:
            raise VersionConflict()
        # Another writer got in between: apply the patch again, to the newer version.
    raise Conflict("the resource kept changing while the patch was applied; retry")


def prepare_patch(
    service: Service,
    ctx: Context,
    rtype: str,
    rid: str,
    patch: JsonPatchDocument,
    if_match: int | None,
) -> PreparedPatch:
    """Apply `patch` to the current version and prepare the result for storage.

    The access policy sees the resource as it is and as it will be (a patch can move it
    to another patient's compartment); a hidden resource is answered as not found.
    """
    # Type-level first, before the lookup: 403 must not depend on whether it exists.
    require_type(service, ctx, "patch", rtype)
    record = service.store.current(rtype, rid)
    if record is None:
        raise NotFound(f"{rtype}/{rid} is not known")
    if record.deleted:
        require(service, ctx, "patch", rtype, rid, record.compartment)
        raise Gone(f"{rtype}/{rid} was deleted")
    body = service._open(record).body
    if body is None:  # a live version always has a body
        raise Gone(f"{rtype}/{rid} was deleted")
    current = fhir_json.loads(body)
    if not isinstance(current, dict):
        raise MalformedJson("the stored resource is not a JSON object")
    require(service, ctx, "patch", rtype, rid, record.compartment, current)
    if if_match is not None and record.version != if_match:
        raise VersionConflict()
    patched = apply_patch(current, patch)
    service._validate(rtype, patched)
    prepared = service.prepare(rtype, rid, patched)
    require(service, ctx, "patch", rtype, rid, prepared.compartment, prepared.resource)
    return PreparedPatch(prepared, record.version)
