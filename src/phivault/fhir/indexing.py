"""What the store indexes for a resource, and which patient compartment it belongs to."""

from __future__ import annotations

from typing import Any

from phivault.store.base import IndexRow
from phivault.types import Resource

# Elements that link a resource to its patient, in order of preference (from the R4
# Patient CompartmentDefinition's most common parameters).
_PATIENT_LINKS = ("subject", "patient", "beneficiary", "individual", "for", "who", "member")


def index_rows(resource: Resource) -> list[IndexRow]:
    rows: list[IndexRow] = []
    for ident in _as_list(resource.get("identifier")):
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            rows.append(
                IndexRow(
                    "identifier", "token", system=ident.get("system") or "", value=ident["value"]
                )
            )
    meta = resource.get("meta") or {}
    for param, key in (("_tag", "tag"), ("_security", "security")):
        for coding in _as_list(meta.get(key)):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                rows.append(
                    IndexRow(
                        param, "token", system=coding.get("system") or "", value=coding["code"]
                    )
                )
    for profile in _as_list(meta.get("profile")):
        if isinstance(profile, str):
            rows.append(IndexRow("_profile", "uri", value=profile))
    return rows


def patient_compartment(resource: Resource) -> str | None:
    """ "Patient/<id>" of the patient whose record this resource is part of, if any."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) else None
    for key in _PATIENT_LINKS:
        for ref in _as_list(resource.get(key)):
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.startswith("Patient/"):
                return target.split("/_history", 1)[0]
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
