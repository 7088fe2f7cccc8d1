"""What detectors know about the clinic, read from the vault: users and their roles, the
patients behind audit pseudonyms, what explains a user's access to a patient, and which
patients are relatives, co-workers, VIPs or canaries.

Identity is compared only through blind indexes (keyed tokens of names, addresses and
contact points, the same ones search uses): no name or address is ever read in clear.
Clinical facts (care teams, encounters, appointments, orders) are read from the patient's
compartment and decrypted in memory only, to answer "is this access explained?".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from phivault.access.principal import BILLING, CLINICAL_ROLES, FRONT_DESK
from phivault.detect.kinship import HELD, Holders, Kinship, candidates_of, staff_kinship
from phivault.detect.model import parse_instant
from phivault.detect.patients import PatientIndex
from phivault.detect.sql import DetectSql, string_tokens
from phivault.store.access_sql import AccessStore
from phivault.store.base import Store, VersionRecord
from phivault.store.compartment_sql import CompartmentQuery

Pseudonymizer = Callable[[str], str]
Opener = Callable[[VersionRecord], bytes | None]

BREAK_GLASS_PURPOSE = "ETREAT"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VIP_CODES = ("CEL", "VIP")  # celebrity; a local "VIP" code is accepted too
STAFF_CODES = ("EMP",)  # employee information sensitivity
EXPLAIN_TYPES = (
    "Appointment",
    "CareTeam",
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "MedicationRequest",
)
DAY = 86_400.0
APPOINTMENT_WINDOW = 30 * DAY  # as the access policy: an appointment relates within +-30 days
BILLING_WINDOW = 180 * DAY  # billing follows a visit for months
_FACT_TTL = 120.0
_CLINIC_TTL = 300.0
_MAX_CACHED = 20_000


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    roles: frozenset[str]
    practitioner: str | None
    account: str | None = None  # the keyed account name failed logins are audited under
    username: str = ""

    @property
    def label(self) -> str:
        """How titles name the user: their login name (staff, not patient, data) and id."""
        return f"{self.username} ({self.user_id})" if self.username else self.user_id

    @property
    def role(self) -> str:
        """The role used to pick peers: the first clinical role, else any."""
        clinical = sorted(self.roles & CLINICAL_ROLES)
        return clinical[0] if clinical else (sorted(self.roles)[0] if self.roles else "")


@dataclass(frozen=True, slots=True)
class PatientFacts:
    team: frozenset[str] = frozenset()  # practitioners with a care team, encounter or order
    appointments: tuple[tuple[frozenset[str], float], ...] = ()  # (participants, start)
    visits: tuple[float, ...] = ()  # encounter starts


@dataclass(frozen=True, slots=True)
class Explanation:
    explained: bool
    reason: str  # care-team, appointment, scheduled-visit, billed-visit, break-glass, none
    score: float  # 1.0 fully explained by the record ... 0.0 nothing explains it


UNEXPLAINED = Explanation(False, "none", 0.0)


class ClinicFacts(Protocol):
    """What a detector may ask. `VaultFacts` answers from a data directory."""

    def user(self, actor: str) -> UserInfo | None: ...

    def users(self) -> list[UserInfo]: ...

    def patient_of(self, result_ref: str) -> str | None:
        """The pseudonym of a "Patient/<id>[/<version>]" result reference, else None."""
        ...

    def explain(
        self, user: UserInfo, patient: str, at: float, purpose: str | None
    ) -> Explanation: ...

    def kin(self, practitioner: str) -> tuple[set[str], set[str]]:
        """(patients sharing the practitioner's rare surname, ... their address)."""
        ...

    def staff_patient(self, patient: str) -> str | None:
        """The practitioner a patient record belongs to, if the patient is staff."""
        ...

    def is_vip(self, patient: str) -> bool: ...

    def is_canary(self, patient: str) -> bool: ...

    def forget(self, patient: str) -> None:
        """The patient's record changed (a new appointment, care team ...): re-read it."""
        ...


class VaultFacts:
    """ClinicFacts over a store, with bodies opened by the service's codec."""

    def __init__(
        self,
        store: Store,
        pseudonymize: Pseudonymizer,
        opener: Opener,
        account_key: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.account_key = account_key
        self.sql = DetectSql(store)
        self.pseudonymize = pseudonymize
        self.opener = opener
        self._lock = threading.Lock()
        self._users: dict[str, UserInfo] = {}
        self._users_at = -1e18
        self._patients = PatientIndex(self.sql, pseudonymize)  # pseudonym -> compartment
        self._facts: OrderedDict[str, tuple[float, PatientFacts]] = OrderedDict()
        self._kinship: Kinship | None = None
        self._vip: set[str] = set()
        self._labelled_staff: set[str] = set()
        self._canaries: set[str] = set()
        self._clinic_at = -1e18
        self._labels_at = -1e18

    # -- users ---------------------------------------------------------------------------------
    def user(self, actor: str) -> UserInfo | None:
        found = self._users.get(actor)
        if found is None and time.monotonic() - self._users_at > 30.0:
            self._load_users()
            found = self._users.get(actor)
        return found

    def users(self) -> list[UserInfo]:
        if not self._users:
            self._load_users()
        return list(self._users.values())

    def _load_users(self) -> None:
        rows = AccessStore(self.store).users()
        key = self.account_key
        self._users = {
            r.user_id: UserInfo(
                r.user_id,
                frozenset(r.roles.split()),
                r.practitioner,
                key(r.username) if key is not None else None,
                r.username,
            )
            for r in rows
            if not r.disabled
        }
        self._users_at = time.monotonic()

    # -- patients ------------------------------------------------------------------------------
    def compartment(self, patient: str) -> str | None:
        return self._patients.compartment(patient)

    def patient_of(self, result_ref: str) -> str | None:
        parts = result_ref.split("/")
        if len(parts) < 2 or parts[0] != "Patient":
            return None
        return self.pseudonymize(f"Patient/{parts[1]}")

    def facts(self, patient: str) -> PatientFacts:
        now = time.monotonic()
        with self._lock:
            cached = self._facts.get(patient)
            if cached is not None and now - cached[0] < _FACT_TTL:
                return cached[1]
        compartment = self.compartment(patient)
        found = PatientFacts() if compartment is None else self._read_facts(compartment)
        with self._lock:
            self._facts[patient] = (now, found)
            self._facts.move_to_end(patient)
            while len(self._facts) > _MAX_CACHED:
                self._facts.popitem(last=False)
        return found

    def forget(self, patient: str) -> None:
        with self._lock:
            self._facts.pop(patient, None)

    def _read_facts(self, compartment: str) -> PatientFacts:
        resources: list[dict[str, Any]] = []
        after: tuple[str, str] | None = None
        while True:
            page = self.store.compartment(
                CompartmentQuery(compartment, rtypes=EXPLAIN_TYPES, after=after, limit=500)
            )
            for record in page:
                try:
                    body = self.opener(record)
                except Exception:  # a shredded or damaged record explains nothing
                    body = None
                if body is not None:
                    parsed = orjson.loads(body)
                    if isinstance(parsed, dict):
                        resources.append(parsed)
            if len(page) < 500:
                break
            after = (page[-1].rtype, page[-1].rid)
        return facts_from(resources)

    def explain(self, user: UserInfo, patient: str, at: float, purpose: str | None) -> Explanation:
        """Explanation-based auditing (Fabbri and LeFevre): an access is explained when the
        record links the user to the patient: a care team, encounter or order naming them,
        an appointment with them near the access, or (clerical roles) a visit that the
        work is for. Break-glass explains an access but is reviewed on its own."""
        if purpose == BREAK_GLASS_PURPOSE:
            return Explanation(True, "break-glass", 0.5)
        return explain_with(self.facts(patient), user, at)

    # -- kinship, co-workers, VIPs, canaries ------------------------------------------------------
    # Two caches with one lifetime: the labels (VIP, staff, canary: small sets, asked about
    # on every entry) and kinship (asked about only for users' accesses to patients).
    def _labels(self) -> None:
        if time.monotonic() - self._labels_at < _CLINIC_TTL:
            return
        labelled = self.sql.security_labelled([*VIP_CODES, *STAFF_CODES])
        self._vip = {self.pseudonymize(f"Patient/{rid}") for rid, c in labelled if c in VIP_CODES}
        self._labelled_staff = {
            self.pseudonymize(f"Patient/{rid}") for rid, c in labelled if c in STAFF_CODES
        }
        self._canaries = self.sql.canaries()
        self._labels_at = time.monotonic()

    def _clinic(self) -> Kinship:
        if time.monotonic() - self._clinic_at >= _CLINIC_TTL or self._kinship is None:
            self._kinship = self._read_kinship()
            self._clinic_at = time.monotonic()
        return self._kinship

    def refresh(self) -> None:
        """Re-read everything (after the clinic's staff or patients changed)."""
        self._clinic_at = self._labels_at = self._users_at = -1e18
        self._patients.clear()
        with self._lock:
            self._facts.clear()

    def _read_kinship(self) -> Kinship:
        """Kinship from the staff's tokens and only the patients sharing one of them
        (found through the index): never every patient's tokens at once."""
        staff: dict[str, dict[str, set[str]]] = {}
        rows = self.sql.string_values("Practitioner", ("family", "given", "address"))
        for rid, param, text, value in rows:
            for _rid, _param, token in string_tokens(rid, param, text, value):
                staff.setdefault(f"Practitioner/{rid}", {}).setdefault(param, set()).add(token)
        for rid, _param, token in self.sql.tokens("Practitioner", ("phone", "email")):
            staff.setdefault(f"Practitioner/{rid}", {}).setdefault("contact", set()).add(token)
        holders: Holders = {}
        for param in HELD:
            values = [v for _r, p, _t, v in rows if p == param and v is not None]
            for rid, _param, token in self.sql.string_holders("Patient", param, values):
                holders.setdefault((param, token), set()).add(rid)
        candidates = sorted(
            {rid for mine in staff.values() for rid in candidates_of(mine, holders)}
        )
        patients: dict[str, dict[str, set[str]]] = {}
        for rid, param, token in self.sql.exact_tokens(
            "Patient", ("family", "given", "address"), candidates
        ):
            patients.setdefault(rid, {}).setdefault(param, set()).add(token)
        for rid, _param, token in self.sql.tokens("Patient", ("phone", "email"), candidates):
            patients.setdefault(rid, {}).setdefault("contact", set()).add(token)
        return staff_kinship(staff, holders, patients, self.pseudonymize)

    def kin(self, practitioner: str) -> tuple[set[str], set[str]]:
        kinship = self._clinic()
        return (
            kinship.surname.get(practitioner, set()),
            kinship.address.get(practitioner, set()),
        )

    def staff_patient(self, patient: str) -> str | None:
        found = self._clinic().staff_patients.get(patient)
        if found is None:
            self._labels()
            if patient in self._labelled_staff:
                return "labelled"
        return found

    def is_vip(self, patient: str) -> bool:
        self._labels()
        return patient in self._vip

    def is_canary(self, patient: str) -> bool:
        self._labels()
        return patient in self._canaries


def explain_with(facts: PatientFacts, user: UserInfo, at: float) -> Explanation:
    who = user.practitioner
    if who and who in facts.team:
        return Explanation(True, "care-team", 1.0)
    if who and any(
        who in people and abs(start - at) <= APPOINTMENT_WINDOW
        for people, start in facts.appointments
    ):
        return Explanation(True, "appointment", 1.0)
    if FRONT_DESK in user.roles:
        if any(abs(start - at) <= APPOINTMENT_WINDOW for _, start in facts.appointments):
            return Explanation(True, "scheduled-visit", 0.8)
    if BILLING in user.roles:
        visits = [*facts.visits, *(start for _, start in facts.appointments)]
        if any(-APPOINTMENT_WINDOW <= at - start <= BILLING_WINDOW for start in visits):
            return Explanation(True, "billed-visit", 0.8)
    return UNEXPLAINED


def facts_from(resources: Iterable[dict[str, Any]]) -> PatientFacts:
    team: set[str] = set()
    appointments: list[tuple[frozenset[str], float]] = []
    visits: list[float] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind == "CareTeam" and res.get("status") in ("active", "proposed"):
            team.update(_refs(res.get("participant"), "member"))
        elif kind == "Encounter" and res.get("status") != "entered-in-error":
            team.update(_refs(res.get("participant"), "individual"))
            start = _instant(_get(res, "period", "start"))
            if start is not None:
                visits.append(start)
        elif kind == "EpisodeOfCare":
            care_manager = _get(res, "careManager", "reference")
            if isinstance(care_manager, str):
                team.add(care_manager)
        elif kind in ("ServiceRequest", "MedicationRequest"):
            if res.get("status") not in ("entered-in-error", "revoked"):
                for key in ("requester", "performer"):
                    team.update(_refs(res.get(key), None))
        elif kind == "Appointment" and res.get("status") not in (
            "cancelled",
            "entered-in-error",
            "noshow",
        ):
            start = _instant(res.get("start"))
            if start is not None:
                appointments.append((frozenset(_refs(res.get("participant"), "actor")), start))
    return PatientFacts(frozenset(team), tuple(appointments), tuple(visits))


def _get(res: dict[str, Any], *path: str) -> Any:
    value: Any = res
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _refs(value: Any, key: str | None) -> list[str]:
    items = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in items:
        target = item.get(key) if key is not None and isinstance(item, dict) else item
        if isinstance(target, dict) and isinstance(target.get("reference"), str):
            found.append(target["reference"])
    return found


def _instant(value: Any) -> float | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return parse_instant(value if "T" in value else value + "T00:00:00Z")
    except ValueError:
        return None
