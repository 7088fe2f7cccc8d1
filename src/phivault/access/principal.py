"""Who is asking: the authenticated identity a bearer token stands for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phivault.access.scopes import Scope

USER = "user"
SYSTEM = "system"

CLINICIAN = "clinician"
NURSE = "nurse"
FRONT_DESK = "front-desk"
BILLING = "billing"
RESEARCHER = "researcher"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = frozenset({CLINICIAN, NURSE, FRONT_DESK, BILLING, RESEARCHER, AUDITOR, ADMIN})
CLINICAL_ROLES = frozenset({CLINICIAN, NURSE})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `subject` is a user id or a registered client's id."""

    subject: str
    kind: str = USER  # USER (interactive, via a SMART app) or SYSTEM (backend services)
    roles: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] = ()
    client_id: str | None = None
    patient: str | None = None  # launch patient context: a Patient id
    practitioner: str | None = None  # "Practitioner/<id>" the user acts as
    session_id: str | None = None
    break_glass_until: float | None = None  # epoch seconds; None: no emergency access
    token_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # (interaction, resource type) -> what the scopes and roles say about it (the policy's
    # _Plan, with the type-level Decision): it depends on roles and scopes only, which
    # never change for one principal.
    plans: dict[tuple[str, str], Any] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    # (interaction, resource type, purpose of use) -> what the policy decided a search may
    # see, with how long that holds (Policy.visible checks it before each use).
    visibility: dict[tuple[str, str, str | None], Any] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    # client address -> the request Context (service/records.py) the API made for this
    # principal from there, kept by api/middleware/auth.py while its purpose of use
    # cannot change (no break-glass): a token seen before then costs no new Context.
    contexts: dict[str | None, Any] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def break_glass_active(self, now: float) -> bool:
        return self.break_glass_until is not None and now < self.break_glass_until

    @property
    def is_clinical(self) -> bool:
        return not self.roles.isdisjoint(CLINICAL_ROLES)
