"""Credential attacks, from the login entries.

- failed logins per account and per network address within `failure_window_seconds`;
- password spraying: failures on `spray_accounts` distinct accounts from one address
  (or, spread over addresses, twice that many accounts clinic-wide);
- a successful login after failures on the account (the attack may have worked);
- a login from an address the user never used, followed within
  `new_address_window_seconds` by unusual reads: records the record does not explain,
  or more patients than the user's busiest hour.

Failed logins name the account by a keyed hash (a mistyped username is often a
password); `ClinicFacts` maps users to that hash, so both halves line up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from phivault.detect.detectors.common import (
    DAY,
    HOUR,
    Window,
    hour_of,
    name_of,
    patient_access,
)
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Entry, Finding, Severity
from phivault.detect.settings import DetectSettings

LOGIN = "login"
MIN_HISTORY_DAYS = 3


@dataclass
class _Watch:
    """After a login from a new address: what the session does next."""

    address: str
    until: float
    login_idx: int
    patients: set[str] = field(default_factory=set)
    unexplained: int = 0
    evidence: list[int] = field(default_factory=list)
    reported: bool = False


@dataclass
class _UserLogins:
    addresses: set[str] = field(default_factory=set)
    days: set[int] = field(default_factory=set)
    busiest: dict[int, set[str]] = field(default_factory=dict)  # hour -> patients
    watch: _Watch | None = None

    def busiest_hour(self) -> int:
        return max((len(p) for p in self.busiest.values()), default=0)


class CredentialAttacks:
    name = "credentials"
    description = "failed-login bursts, password spraying, logins after failures, new addresses"

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        span = settings.failure_window_seconds
        self.by_account: dict[str, Window] = {}
        self.by_address: dict[str, Window] = {}
        self.clinic = Window(span)
        self.recent_failures: dict[str, Window] = {}  # account -> failures in the last hour
        self.users: dict[str, _UserLogins] = {}

    def _window(self, table: dict[str, Window], key: str, span: float) -> Window:
        found = table.get(key)
        if found is None:
            if len(table) > 50_000:
                table.clear()
            found = table[key] = Window(span)
        return found

    def observe(self, entry: Entry, facts: ClinicFacts) -> Iterable[Finding]:
        if entry.action == LOGIN:
            return self._failed(entry) if not entry.ok else self._succeeded(entry, facts)
        return self._after_login(entry, facts)

    # -- failures ---------------------------------------------------------------------------------
    def _failed(self, entry: Entry) -> list[Finding]:
        span = self.s.failure_window_seconds
        account, address = entry.actor, entry.client or "unknown"
        per_account = self._window(self.by_account, account, span)
        per_account.add(entry.at, address, entry.idx)
        per_address = self._window(self.by_address, address, span)
        per_address.add(entry.at, account, entry.idx)
        self.clinic.add(entry.at, account, entry.idx)
        self._window(self.recent_failures, account, HOUR).add(entry.at, address, entry.idx)
        found: list[Finding] = []
        window_hour = hour_of(entry.at)
        if per_account.count() >= self.s.failed_per_account:
            found.append(
                self._finding(
                    entry,
                    "failed-logins-account",
                    Severity.MEDIUM,
                    f"{per_account.count()} failed logins for one account in "
                    f"{int(span // 60)} minutes (account {account})",
                    f"account:{account}:{window_hour}",
                    per_account,
                    actor=account,
                )
            )
        if per_address.count() >= self.s.failed_per_address:
            found.append(
                self._finding(
                    entry,
                    "failed-logins-address",
                    Severity.HIGH,
                    f"{per_address.count()} failed logins from address {address} in "
                    f"{int(span // 60)} minutes",
                    f"address:{address}:{window_hour}",
                    per_address,
                )
            )
        accounts = len(per_address.keys())
        if accounts >= self.s.spray_accounts:
            found.append(
                self._finding(
                    entry,
                    "password-spraying",
                    Severity.HIGH,
                    f"Password spraying: failed logins on {accounts} different accounts from "
                    f"address {address}",
                    f"spray:{address}:{window_hour}",
                    per_address,
                )
            )
        spread = len(self.clinic.keys())
        if spread >= 2 * self.s.spray_accounts and len({a for a in self._addresses()}) >= 3:
            found.append(
                self._finding(
                    entry,
                    "password-spraying",
                    Severity.HIGH,
                    f"Password spraying: failed logins on {spread} different accounts from "
                    "several addresses",
                    f"spray:clinic:{window_hour}",
                    self.clinic,
                )
            )
        return found

    def _addresses(self) -> set[str]:
        recent = {idx for _, _, idx in self.clinic.times}
        return {a for a, w in self.by_address.items() if any(i in recent for _, _, i in w.times)}

    # -- successes --------------------------------------------------------------------------------
    def _succeeded(self, entry: Entry, facts: ClinicFacts) -> list[Finding]:
        user = facts.user(entry.actor)
        found: list[Finding] = []
        accounts = [entry.actor] + ([user.account] if user is not None and user.account else [])
        failures = [w for a in accounts if (w := self.recent_failures.get(a)) is not None]
        for w in failures:
            w.add(entry.at, "", -1)  # expire old ones
        recent = [i for w in failures for _, _, i in w.times if i >= 0]
        if len(recent) >= 3:
            found.append(
                Finding(
                    detector=self.name,
                    kind="login-after-failures",
                    severity=Severity.HIGH,
                    title=f"{name_of(entry.actor, facts)} logged in after {len(recent)} failed "
                    "attempts "
                    f"within the hour (from address {entry.client or 'unknown'}): the password "
                    "may have been guessed",
                    group=f"{self.name}:login-after-failures:{entry.actor}:{hour_of(entry.at)}",
                    evidence=(*recent[-30:], entry.idx),
                    at=entry.at,
                    actor=entry.actor,
                )
            )
        for w in failures:
            w.times.clear()
        logins = self.users.setdefault(entry.actor, _UserLogins())
        day = int(entry.at // DAY)
        address = entry.client or "unknown"
        if (
            len(logins.days - {day}) >= MIN_HISTORY_DAYS
            and address not in logins.addresses
            and address != "unknown"
        ):
            logins.watch = _Watch(address, entry.at + self.s.new_address_window_seconds, entry.idx)
        logins.addresses.add(address)
        logins.days.add(day)
        return found

    def _after_login(self, entry: Entry, facts: ClinicFacts) -> list[Finding]:
        user = patient_access(entry, facts)  # allowed, or refused by the policy
        if user is None or entry.patient is None:
            return []
        logins = self.users.setdefault(user.user_id, _UserLogins())
        hour = hour_of(entry.at)
        if len(logins.busiest) > 24 * 30:
            logins.busiest = dict(sorted(logins.busiest.items())[-24 * 28 :])
        watch = logins.watch
        if watch is None or entry.at > watch.until or entry.client != watch.address:
            logins.busiest.setdefault(hour, set()).add(entry.patient)
            return []
        watch.patients.add(entry.patient)
        watch.evidence.append(entry.idx)
        if (
            not entry.ok
            or not facts.explain(user, entry.patient, entry.at, entry.purpose).explained
        ):
            watch.unexplained += 1
        busiest = max(logins.busiest_hour(), 5)
        unusual = watch.unexplained > 0 or len(watch.patients) > busiest
        if not unusual or watch.reported:
            return []
        watch.reported = True
        return [
            Finding(
                detector=self.name,
                kind="new-address-unusual-reads",
                severity=Severity.HIGH,
                title=f"User {user.label} logged in from an address never used before "
                f"({watch.address}) and then opened {len(watch.patients)} patient record(s), "
                f"{watch.unexplained} of them with no explanation in the record",
                group=f"{self.name}:new-address:{user.user_id}:{watch.address}",
                evidence=(watch.login_idx, *watch.evidence[-50:]),
                at=entry.at,
                actor=user.user_id,
            )
        ]

    def _finding(
        self,
        entry: Entry,
        kind: str,
        severity: Severity,
        title: str,
        group: str,
        window: Window,
        actor: str | None = None,
    ) -> Finding:
        return Finding(
            detector=self.name,
            kind=kind,
            severity=severity,
            title=title,
            group=f"{self.name}:{group}",
            evidence=window.evidence(),
            at=entry.at,
            actor=actor,
            details={"address": entry.client or "unknown"},
        )

    def tick(self, now: float, facts: ClinicFacts) -> Iterable[Finding]:
        return ()
