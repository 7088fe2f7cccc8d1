"""Search conditions as used by conditional create, update and delete.

Conditional interactions must never guess: a parameter the server cannot evaluate would
silently widen the match, so here an unsupported parameter is always an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qsl

from phivault.errors import BadRequest, UnsupportedSearchParameter

MAX_TERMS = 20
MAX_VALUES = 50

TOKEN_PARAMS = frozenset({"_id", "identifier", "_tag", "_security"})


@dataclass(frozen=True, slots=True)
class Term:
    param: str
    values: tuple[tuple[str | None, str], ...]  # (system or None for any, code), ORed


@dataclass(frozen=True, slots=True)
class Condition:
    terms: tuple[Term, ...]  # ANDed

    def audit_terms(self) -> tuple[tuple[str, str], ...]:
        """Parameter names with hashed values: the audit log records what was asked
        without recording identifying values in clear."""
        out = []
        for term in self.terms:
            for system, code in term.values:
                digest = hashlib.sha256(f"{system or ''}|{code}".encode()).hexdigest()[:16]
                out.append((term.param, digest))
        return tuple(out)


def parse_condition(rtype: str, query: str) -> Condition:
    query = query.lstrip("?")
    if "?" in query:
        # "Patient?identifier=..." as sent in If-None-Exist by some clients
        head, query = query.split("?", 1)
        if head and head != rtype:
            raise BadRequest("the condition names another resource type")
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_TERMS
        )
    except ValueError:
        raise BadRequest("the condition is not a valid query string") from None
    if not pairs:
        raise BadRequest("the condition is empty")
    terms: list[Term] = []
    for name, raw in pairs:
        if name not in TOKEN_PARAMS:
            raise UnsupportedSearchParameter(
                "unsupported parameter in a condition: "
                + (name if name.replace("_", "").replace("-", "").isalnum() else "(invalid)")
            )
        values = raw.split(",")
        if len(values) > MAX_VALUES or any(not v for v in values):
            raise BadRequest(f"invalid value for {name}")
        parsed: list[tuple[str | None, str]] = []
        for value in values:
            if name == "_id":
                parsed.append((None, value))
            elif "|" in value:
                system, code = value.split("|", 1)
                if not code:
                    raise BadRequest(f"a {name} condition needs a code")
                parsed.append((system, code))
            else:
                parsed.append((None, value))
        terms.append(Term(name, tuple(parsed)))
    return Condition(tuple(terms))
