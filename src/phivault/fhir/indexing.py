"""What the store indexes for a resource, and which patient compartment it belongs to.

Index rows come from the official R4 search parameters (fhir/search). The crypto layer's
`IndexPolicy` may then replace identifying values by blind indexes; this module knows
nothing of keys, only that such a policy may exist.
"""

from __future__ import annotations

from typing import Protocol

from phivault.fhir.search import default_registry, extract
from phivault.fhir.search.extract import extract_params
from phivault.fhir.search.index import date_range, normalize_string
from phivault.types import IndexRow, Resource


class IndexPolicy(Protocol):
    """Turns extracted rows into stored rows (e.g. blinding names and identifiers), and
    search arguments into the form those rows have."""

    def transform(self, rtype: str, rows: list[IndexRow]) -> list[IndexRow]: ...

    def is_blinded(self, rtype: str, param: str) -> bool: ...

    def query_token(self, param: str, code: str) -> str: ...

    def query_prefix_tokens(self, param: str, text: str) -> tuple[tuple[str, ...], bool]:
        """A starts-with search as blind tokens, any of which matches (a parameter whose
        values include another's looks up that one's tokens too), and whether matches
        must be re-checked after decryption."""
        ...

    def query_date(self, param: str, date_text: str) -> str: ...

    def query_reference_identifier(self, system_value: str) -> str: ...


class PlainIndexPolicy:
    """Every value in clear: for the unencrypted comparison runs only."""

    def transform(self, rtype: str, rows: list[IndexRow]) -> list[IndexRow]:
        return rows

    def is_blinded(self, rtype: str, param: str) -> bool:
        return False

    def query_token(self, param: str, code: str) -> str:
        return code

    def query_prefix_tokens(self, param: str, text: str) -> tuple[tuple[str, ...], bool]:
        return (normalize_string(text),), False

    def query_date(self, param: str, date_text: str) -> str:
        return date_text

    def query_reference_identifier(self, system_value: str) -> str:
        return system_value


def index_rows(resource: Resource) -> list[IndexRow]:
    return extract(resource)


def last_updated_rows(instant: str) -> list[IndexRow]:
    """The `_lastUpdated` row of a version stamped at `instant`."""
    found = date_range(instant)
    if found is None:
        return []
    return [IndexRow("_lastUpdated", "date", lo=found[0], hi=found[1])]


_CODES: dict[str, frozenset[str]] = {}


def _compartment_codes(rtype: str, params: list[str]) -> frozenset[str]:
    found = _CODES.get(rtype)
    if found is None:
        found = _CODES[rtype] = frozenset(params)
    return found


def patient_compartment(resource: Resource, rows: list[IndexRow] | None = None) -> str | None:
    """ "Patient/<id>" of the patient whose record this resource belongs to, if any.

    Uses the Patient CompartmentDefinition: the first of the type's compartment
    parameters (in the definition's order) that references a Patient decides. Without
    `rows`, only those parameters are extracted (a download of a Bulk Data file asks
    this of every line).
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) else None
    if not isinstance(rtype, str):
        return None
    params = default_registry().compartment_params(rtype)
    if not params:
        return None
    if rows is None:
        rows = extract_params(resource, _compartment_codes(rtype, params))
    by_param: dict[str, str] = {}
    for row in rows:
        if row.kind == "reference" and row.system == "Patient" and row.value:
            by_param.setdefault(row.param, row.value)
    for param in params:
        if param in by_param:
            return f"Patient/{by_param[param]}"
    return None
