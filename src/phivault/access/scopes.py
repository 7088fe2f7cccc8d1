"""SMART on FHIR scopes, v1 (`patient/*.read`) and v2 (`patient/Observation.rs`).

A scope is `context/ResourceType.permissions`: context is `patient` (only the launch
patient's compartment), `user` (whatever the user may see) or `system` (a backend client);
v2 permissions are a subset of `cruds` in that order, v1's `read`/`write`/`*` map onto them.
Non-resource scopes (`launch`, `launch/patient`, `openid`, `fhirUser`, `offline_access`,
`online_access`) are kept as they are. Search-restricted v2 scopes (`?category=...`) are
refused rather than silently widened: a scope the server cannot honour exactly is not granted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from phivault.errors import InvalidScope

PATIENT = "patient"
USER = "user"
SYSTEM = "system"

# Interaction -> the SMART v2 permission letter that allows it.
INTERACTIONS = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "history-type": "s",
    "history-system": "s",
}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(
    r"(?P<ctx>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perm>[a-z*]+)"
)
_V2_PERMS = re.compile(r"c?r?u?d?s?")
OTHER_SCOPES = frozenset(
    {"launch", "launch/patient", "openid", "fhirUser", "offline_access", "online_access"}
)


@dataclass(frozen=True, slots=True)
class Scope:
    context: str  # patient | user | system
    rtype: str  # a resource type or "*"
    permissions: str  # subset of "cruds"

    def allows(self, rtype: str, interaction: str) -> bool:
        letter = INTERACTIONS.get(interaction)
        if letter is None:
            return False
        return (self.rtype == "*" or self.rtype == rtype) and letter in self.permissions

    def covers(self, other: Scope) -> bool:
        """True if everything `other` grants, this grants too (no escalation)."""
        if self.context != other.context:
            return False
        if self.rtype != "*" and self.rtype != other.rtype:
            return False
        return set(other.permissions) <= set(self.permissions)

    def __str__(self) -> str:
        return f"{self.context}/{self.rtype}.{self.permissions}"


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None for a known non-resource scope. Raises InvalidScope."""
    if text in OTHER_SCOPES:
        return None
    if "?" in text:
        raise InvalidScope("search-restricted scopes are not supported")
    match = _RESOURCE_SCOPE.fullmatch(text)
    if match is None:
        raise InvalidScope()
    perm = match["perm"]
    if perm in _V1:
        perm = _V1[perm]
    elif not perm or not _V2_PERMS.fullmatch(perm):
        raise InvalidScope()
    return Scope(match["ctx"], match["type"], perm)


def parse_scopes(text: str) -> tuple[tuple[Scope, ...], frozenset[str]]:
    """(resource scopes, other scopes) of a space-separated scope string."""
    resource: list[Scope] = []
    other: set[str] = set()
    for item in text.split():
        scope = parse_scope(item)
        if scope is None:
            other.add(item)
        else:
            resource.append(scope)
    return tuple(resource), frozenset(other)


def check_within(requested: str, allowed: str) -> str:
    """`requested` if every scope in it is covered by `allowed`; else InvalidScope.

    The one check against scope escalation: an authorization request, a refresh and a
    client-credentials request may only narrow what was registered or granted.
    """
    want, want_other = parse_scopes(requested)
    have, have_other = parse_scopes(allowed)
    if not want_other <= have_other:
        raise InvalidScope()
    for scope in want:
        if not any(h.covers(scope) for h in have):
            raise InvalidScope()
    return " ".join(requested.split())


def allowing(scopes: tuple[Scope, ...], rtype: str, interaction: str) -> tuple[Scope, ...]:
    """The scopes that allow `interaction` on `rtype` (empty: not allowed)."""
    return tuple(s for s in scopes if s.allows(rtype, interaction))
