"""Audit entries as FHIR R4 AuditEvent resources, shaped after IHE Basic Audit Log Patterns.

Pure functions: an entry (its index and parsed fields) in, an AuditEvent out; search
parameters in, an `AuditQuery` plus a matcher out. Nothing here is stored: the AuditEvent
view is rendered from the log on every request, so it cannot diverge from it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from phivault.errors import InvalidSearchParameter, UnsupportedSearchParameter
from phivault.fhir.resources import small_int
from phivault.store.audit_sql import AuditIndexRow, AuditQuery

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
PHIVAULT_ACTION = "urn:phivault:audit-action"
PSEUDONYM_SYSTEM = "urn:phivault:audit:patient-pseudonym"
ACTOR_SYSTEM = "urn:phivault:actor"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

_REST = (EVENT_TYPE, "rest", "RESTful Operation")
_AUTH = (DCM, "110114", "User Authentication")
_EXPORT = (DCM, "110106", "Export")
_SECURITY = (DCM, "110113", "Security Alert")
_APPLICATION = (DCM, "110100", "Application Activity")

# action -> (type, subtype code in RESTFUL or DCM, AuditEvent.action)
_ACTIONS: dict[str, tuple[tuple[str, str, str], tuple[str, str] | None, str]] = {
    "read": (_REST, (RESTFUL, "read"), "R"),
    "vread": (_REST, (RESTFUL, "vread"), "R"),
    "create": (_REST, (RESTFUL, "create"), "C"),
    "update": (_REST, (RESTFUL, "update"), "U"),
    "patch": (_REST, (RESTFUL, "patch"), "U"),
    "delete": (_REST, (RESTFUL, "delete"), "D"),
    "search": (_REST, (RESTFUL, "search-type"), "E"),
    "history": (_REST, (RESTFUL, "history-type"), "R"),
    "everything": (_REST, (RESTFUL, "operation"), "E"),
    "export": (_EXPORT, None, "E"),
    "export-download": (_EXPORT, None, "R"),
    "login": (_AUTH, (DCM, "110122"), "E"),
    "authenticate": (_AUTH, (DCM, "110122"), "E"),
    "logout": (_AUTH, (DCM, "110123"), "E"),
    "token": (_AUTH, None, "E"),
    "break-glass": (_SECURITY, None, "E"),
}
_DEFAULT = (_APPLICATION, None, "E")
KNOWN_ACTIONS = frozenset(_ACTIONS)

SEARCH_PARAMS = frozenset(
    {"date", "agent", "entity", "type", "subtype", "action", "outcome", "patient", "_id"}
)
PAGING_PARAMS = frozenset({"_count", "_cursor", "_format"})
MAX_VALUES = 20
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/(\d{1,9}))?$")
_CODE = re.compile(r"^[A-Z]{2,12}$")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _classify(action: str, entry: Mapping[str, Any]) -> tuple[dict[str, str], list[Any], str]:
    (tsys, tcode, tdisplay), sub, verb = _ACTIONS.get(action, _DEFAULT)
    subtypes = [_coding(PHIVAULT_ACTION, action)]
    if sub is not None:
        code = sub[1]
        if action == "history":
            code = (
                "history-instance"
                if entry.get("id")
                else "history-type"
                if entry.get("type")
                else "history-system"
            )
        subtypes.insert(0, _coding(sub[0], code))
    return _coding(tsys, tcode, tdisplay), subtypes, verb


def _entity(reference: str, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "what": {"reference": reference},
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, role),
        **extra,
    }


def render(index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The AuditEvent view of entry `index` (its id is the entry's index in the log)."""
    action = str(entry["action"])
    event_type, subtypes, verb = _classify(action, entry)
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(PARTICIPATION, "AUT" if verb in "CUD" else "IRCP")]},
        "who": {"identifier": {"system": ACTOR_SYSTEM, "value": str(entry["actor"])}},
        "requestor": True,
    }
    client = entry.get("client")
    if isinstance(client, str):
        is_ip = bool(re.fullmatch(r"[0-9.]+|[0-9A-Fa-f:]+", client))
        agent["network"] = {"address": client, "type": "2" if is_ip else "1"}
    purpose = entry.get("purpose")
    if isinstance(purpose, str):
        if _CODE.fullmatch(purpose):
            agent["purposeOfUse"] = [{"coding": [_coding(ACT_REASON, purpose)]}]
        else:
            agent["purposeOfUse"] = [{"text": purpose}]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(index),
        "meta": {"versionId": "1", "lastUpdated": entry["time"]},
        "type": event_type,
        "subtype": subtypes,
        "action": verb,
        "recorded": entry["time"],
        "outcome": str(entry["outcome"]),
        "agent": [agent],
        "source": {
            "observer": {"display": "phivault"},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if isinstance(entry.get("detail"), str):
        event["outcomeDesc"] = entry["detail"]
    event["entity"] = _entities(entry)
    if not event["entity"]:
        del event["entity"]
    return event


def _entities(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    rtype, rid, version = entry.get("type"), entry.get("id"), entry.get("version")
    details: list[dict[str, str]] = []
    if isinstance(entry.get("data_sha256"), str):
        details.append({"type": "data-sha256", "valueString": entry["data_sha256"]})
    extra = entry.get("extra")
    if isinstance(extra, dict):
        details += [{"type": str(k), "valueString": str(v)} for k, v in sorted(extra.items())]
    if isinstance(rtype, str) and isinstance(rid, str):
        reference = f"{rtype}/{rid}" + (f"/_history/{version}" if version is not None else "")
        entities.append(_entity(reference, "4", **({"detail": details} if details else {})))
    elif details:
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"), "detail": details})
    patient = entry.get("patient")
    if isinstance(patient, str):
        entities.append(
            {
                "what": {"identifier": {"system": PSEUDONYM_SYSTEM, "value": patient}},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    query = entry.get("query")
    if isinstance(query, list) and query:
        # The terms as the log holds them: parameter names with keyed hashes of values.
        encoded = base64.b64encode(orjson.dumps(query)).decode("ascii")
        search: dict[str, Any] = {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "24", "Query"),
            "query": encoded,
        }
        if isinstance(rtype, str):
            search["description"] = rtype
        entities.append(search)
    results = entry.get("results")
    if isinstance(results, list):
        for item in results:
            parts = str(item).split("/")
            if len(parts) == 3:
                entities.append(_entity(f"{parts[0]}/{parts[1]}/_history/{parts[2]}", "4"))
    return entities


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Search:
    """A parsed AuditEvent search: what the index narrows and what the entry must match."""

    query: AuditQuery
    versions: frozenset[tuple[str, str, int]]  # entity=T/id/_history/v (checked per entry)
    ids: frozenset[int] | None  # _id


_PREFIX = re.compile(r"^(eq|gt|ge|lt|le|sa|eb)?(.+)$")


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_range(value: str) -> tuple[str, str]:
    """[lo, hi) instants covered by a FHIR date/dateTime value at its precision."""
    try:
        if re.fullmatch(r"\d{4}", value):
            lo = datetime(int(value), 1, 1, tzinfo=UTC)
            hi = lo.replace(year=lo.year + 1)
        elif re.fullmatch(r"\d{4}-\d{2}", value):
            lo = datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
            hi = (lo + timedelta(days=32)).replace(day=1)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            lo = datetime.fromisoformat(value).replace(tzinfo=UTC)
            hi = lo + timedelta(days=1)
        else:
            lo = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if lo.tzinfo is None:
                lo = lo.replace(tzinfo=UTC)
            step = timedelta(milliseconds=1) if "." in value else timedelta(seconds=1)
            if re.fullmatch(r"[^:]*T\d{2}:\d{2}(Z|[+-].*)?", value):
                step = timedelta(minutes=1)
            hi = lo + step
    except ValueError:
        raise InvalidSearchParameter("date: not a FHIR date or dateTime") from None
    return _instant(lo), _instant(hi)


def _date_terms(raw: str) -> list[tuple[str, str]]:
    match = _PREFIX.match(raw)
    if match is None:
        raise InvalidSearchParameter("date: empty value")
    prefix, value = match.group(1) or "eq", match.group(2)
    lo, hi = date_range(value)
    return {
        "eq": [(">=", lo), ("<", hi)],
        "ge": [(">=", lo)],
        "gt": [(">=", hi)],
        "sa": [(">=", hi)],
        "le": [("<", hi)],
        "lt": [("<", lo)],
        "eb": [("<", lo)],
    }[prefix]


def _token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        system, code = value.split("|", 1)
        return system or None, code
    return None, value


def _actions_for(param: str, values: Sequence[str]) -> set[str]:
    """Every action whose type, subtype or action code is one of `values` (ORed)."""
    found: set[str] = set()
    for raw in values:
        system, code = _token(raw)
        if param == "subtype" and system in (None, PHIVAULT_ACTION):
            found.add(code)
        for action in KNOWN_ACTIONS:
            (tsys, tcode, _), sub, verb = _ACTIONS[action]
            if param == "type" and code == tcode and system in (None, tsys):
                found.add(action)
            elif param == "action" and code == verb:
                found.add(action)
            elif param == "subtype" and sub is not None and system in (None, sub[0]):
                if code == sub[1] or (action == "history" and code.startswith("history-")):
                    found.add(action)
    return found


def parse_search(pairs: Sequence[tuple[str, str]], pseudonymize: Callable[[str], str]) -> Search:
    """FHIR search parameters of AuditEvent to an index query. Unknown parameters are
    refused rather than ignored: an auditor must never get an unfiltered list that looks
    filtered."""
    times: list[tuple[str, str]] = []
    actions: set[str] | None = None
    outcomes: set[str] = set()
    actors: set[str] = set()
    entities: set[tuple[str, str | None]] = set()
    versions: set[tuple[str, str, int]] = set()
    patients: set[str] = set()
    ids: set[int] | None = None
    for name, raw in pairs:
        if name in PAGING_PARAMS:
            continue
        if name not in SEARCH_PARAMS:
            shown = name if re.fullmatch(r"[A-Za-z_:.\-]{1,64}", name) else "(invalid)"
            raise UnsupportedSearchParameter(f"unsupported AuditEvent search parameter: {shown}")
        values = raw.split(",")
        # NUL: PostgreSQL text cannot hold it (the query failed with 503 instead of 400).
        if not raw or len(values) > MAX_VALUES or not all(values) or "\x00" in raw:
            raise InvalidSearchParameter(f"{name}: invalid value")
        if name == "date":
            if len(values) != 1:
                raise InvalidSearchParameter("date: one value per parameter")
            times += _date_terms(values[0])
        elif name in ("type", "subtype", "action"):
            matched = _actions_for(name, values)
            actions = matched if actions is None else actions & matched
        elif name == "outcome":
            outcomes.update(_token(v)[1] for v in values)
        elif name == "agent":
            actors.update(_token(v)[1] for v in values)
        elif name == "_id":
            numbers = {small_int(v) for v in values}
            if None in numbers:
                raise InvalidSearchParameter("_id: AuditEvent ids are entry numbers")
            found = {n for n in numbers if n is not None}
            ids = found if ids is None else ids & found
        else:  # entity, patient
            for value in values:
                match = _REFERENCE.match(value)
                if match is None:
                    raise InvalidSearchParameter(f"{name}: expected Type/id")
                rtype, rid, version = match.groups()
                if name == "patient":
                    if rtype != "Patient" or version is not None:
                        raise InvalidSearchParameter("patient: expected Patient/id")
                    patients.add(pseudonymize(f"Patient/{rid}"))
                else:
                    entities.add((rtype, rid))
                    if version is not None:
                        versions.add((rtype, rid, int(version)))
    query = AuditQuery(
        times=tuple(times),
        actions=tuple(sorted(actions)) if actions is not None else (),
        outcomes=tuple(sorted(outcomes)),
        actors=tuple(sorted(actors)),
        entities=tuple(sorted(entities, key=lambda e: (e[0], e[1] or ""))),
        patients=tuple(sorted(patients)),
    )
    if actions is not None and not actions:
        ids = set()  # a code no entry can have: match nothing, do not drop the filter
    return Search(query, frozenset(versions), frozenset(ids) if ids is not None else None)


def matches(search: Search, index: int, row: AuditIndexRow, entry: Mapping[str, Any]) -> bool:
    """Re-check a hit against the entry itself, so a tampered index row cannot put a
    non-matching entry in the results (`audit verify` finds such rows too)."""
    q = search.query
    if search.ids is not None and index not in search.ids:
        return False
    for op, instant in q.times:
        ok = {
            "<": row.time < instant,
            "<=": row.time <= instant,
            ">": row.time > instant,
            ">=": row.time >= instant,
        }[op]
        if not ok:
            return False
    for wanted, value in (
        (q.actions, row.action),
        (q.outcomes, row.outcome),
        (q.actors, row.actor),
        (q.patients, row.patient),
    ):
        if wanted and value not in wanted:
            return False
    if q.entities and not any(
        row.rtype == t and (i is None or row.rid == i) for t, i in q.entities
    ):
        return False
    if search.versions:
        key = (row.rtype, row.rid, entry.get("version"))
        listed = {(t, i) for t, i, _ in search.versions}
        if (row.rtype, row.rid) in listed and key not in search.versions:
            return False
    return True
