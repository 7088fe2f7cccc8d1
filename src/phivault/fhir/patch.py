"""JSON Patch (RFC 6902) applied to a FHIR resource, behind two functions.

The `jsonpatch` library's exception texts quote the document ("member 'x' not found in
{...}"), which is PHI: they are never passed on. Errors name the operation's index and its
JSON Pointer (element names and array indexes only).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from phivault.errors import InvalidPatch, PatchConflict, PatchRefused
from phivault.types import Resource

MAX_OPERATIONS = 1000
_OPS_NEEDING_VALUE = frozenset({"add", "replace", "test"})
_OPS_NEEDING_FROM = frozenset({"move", "copy"})
_OPS = _OPS_NEEDING_VALUE | _OPS_NEEDING_FROM | {"remove"}
# A pointer shown in an error: element names, indexes, '-' and RFC 6901 escapes only.
_SHOWABLE_POINTER = re.compile(r"^(/[A-Za-z0-9_\-~]{0,64}){0,32}$")


@dataclass(frozen=True, slots=True)
class JsonPatchDocument:
    operations: tuple[dict[str, Any], ...]


def parse_patch(document: object) -> JsonPatchDocument:
    """Check a JSON Patch document's shape; raise InvalidPatch (400) when it is malformed."""
    if not isinstance(document, list) or not document:
        raise InvalidPatch("a JSON Patch document is a non-empty array of operations")
    if len(document) > MAX_OPERATIONS:
        raise InvalidPatch(f"a JSON Patch document may hold at most {MAX_OPERATIONS} operations")
    operations: list[dict[str, Any]] = []
    for index, op in enumerate(document):
        where = [f"operation[{index}]"]
        if not isinstance(op, dict):
            raise InvalidPatch("each JSON Patch operation is an object", expression=where)
        name = op.get("op")
        if name not in _OPS:
            raise InvalidPatch("unknown JSON Patch operation", expression=where)
        if not _is_pointer(op.get("path")):
            raise InvalidPatch("'path' must be a JSON Pointer", expression=where)
        if name in _OPS_NEEDING_FROM and not _is_pointer(op.get("from")):
            raise InvalidPatch(f"'{name}' needs a 'from' JSON Pointer", expression=where)
        if name in _OPS_NEEDING_VALUE and "value" not in op:
            raise InvalidPatch(f"'{name}' needs a 'value'", expression=where)
        operations.append(op)
    return JsonPatchDocument(tuple(operations))


def apply_patch(resource: Resource, patch: JsonPatchDocument) -> Resource:
    """The patched copy of `resource`; the original is left untouched.

    A failed `test` or a path that does not exist: PatchConflict (409, RFC 5789
    "conflicting state"). A result with another id or resourceType: PatchRefused (422).
    """
    result: Any = copy.deepcopy(resource)
    for index, op in enumerate(patch.operations):
        where = [_describe(index, op)]
        try:
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            raise PatchConflict("a JSON Patch 'test' operation failed", expression=where) from None
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException):
            raise PatchConflict(
                "a JSON Patch operation names a location that does not exist",
                expression=where,
            ) from None
        except (jsonpatch.JsonPatchException, TypeError, ValueError):
            raise InvalidPatch(
                "a JSON Patch operation cannot be applied", expression=where
            ) from None
    rtype = resource.get("resourceType")
    if not isinstance(result, dict) or result.get("resourceType") != rtype:
        raise PatchRefused("a patch must not change the resourceType", expression=["resourceType"])
    if result.get("id") != resource.get("id"):
        raise PatchRefused("a patch must not change the id", expression=[f"{rtype}.id"])
    return result


def _is_pointer(value: object) -> bool:
    return isinstance(value, str) and (value == "" or value.startswith("/"))


def _describe(index: int, op: dict[str, Any]) -> str:
    path = op.get("path")
    if isinstance(path, str) and _SHOWABLE_POINTER.match(path):
        return f"operation[{index}] {path}"
    return f"operation[{index}]"
