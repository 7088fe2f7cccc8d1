"""Volume, off-hours and credential detectors: a user's habits, then a departure from them."""

from __future__ import annotations

from phivault.detect.detectors.credentials import CredentialAttacks
from phivault.detect.detectors.off_hours import OffHours
from phivault.detect.detectors.volume import VolumeAnomaly
from phivault.detect.eval.clinic import CLINICIAN, FRONT_DESK, NURSE
from phivault.detect.model import Finding, Severity
from phivault.detect.registry import Detector
from tests.detect.conftest import World
from tests.detect.support import DAY, HOUR, T0, entry

MONDAY = T0 - 14 * HOUR  # Monday 00:13 UTC


def _feed(detector: Detector, world: World, entries: list) -> list[Finding]:  # type: ignore[type-arg]
    found: list[Finding] = []
    for item in entries:
        found.extend(detector.observe(item, world.facts))
    return found


def _workdays(
    world: World, member_id: str, patients: list[str], hours: range, days: int = 5
) -> list:  # type: ignore[type-arg]
    """A working week: a few patients every hour of the user's shift."""
    out = []
    for day in range(days):
        for hour in hours:
            for n, p in enumerate(patients[:4]):
                out.append(
                    entry(actor=member_id, patient=p, at=MONDAY + day * DAY + hour * HOUR + n * 300)
                )
    return out


def test_volume_against_own_and_peer_baselines(world: World) -> None:
    detector = VolumeAnomaly(world.settings)
    clinician = world.member(CLINICIAN)
    mine = [world.pseudonym(p) for p in world.clinic.panel(clinician)]
    assert _feed(detector, world, _workdays(world, clinician.user_id, mine, range(8, 17))) == []
    everyone = [world.pseudonym(p) for p in world.clinic.patients]
    burst = [
        entry(actor=clinician.user_id, patient=p, at=MONDAY + 7 * DAY + 10 * HOUR + n)
        for n, p in enumerate(everyone)
    ]
    found = _feed(detector, world, burst)
    assert [f.kind for f in found] == ["volume-patients"]
    assert found[0].severity is Severity.HIGH and int(found[0].details["count"]) > 25
    exports = [
        entry("everything", clinician.user_id, patient=p, at=MONDAY + 8 * DAY + 10 * HOUR + n)
        for n, p in enumerate(mine[:3])
    ]
    assert [f.kind for f in _feed(detector, world, exports)] == ["volume-exports"]


def test_volume_below_the_floor_is_quiet(world: World) -> None:
    detector = VolumeAnomaly(world.settings)
    desk = world.member(FRONT_DESK)
    patients = [world.pseudonym(p) for p in world.clinic.patients[:20]]
    hour = [
        entry(actor=desk.user_id, patient=p, at=MONDAY + 9 * HOUR + n * 60)
        for n, p in enumerate(patients)
    ]
    assert _feed(detector, world, hour) == []
    failed = [
        entry(actor=desk.user_id, patient=p, outcome="4", at=MONDAY + 10 * HOUR)
        for p in patients * 3
    ]
    assert _feed(detector, world, failed) == []


def test_volume_ignores_bulk_writes(world: World) -> None:
    """An import (the demo, a migration) writes many patients' records and discloses
    none: not a volume anomaly, while the same patients read in an hour are one."""
    detector = VolumeAnomaly(world.settings)
    everyone = [world.pseudonym(p) for p in world.clinic.patients]
    for action in ("create", "update", "import"):
        writes = [
            entry(action, "cli:demo", patient=p, at=MONDAY + 9 * HOUR + n)
            for n, p in enumerate(everyone)
        ]
        assert _feed(detector, world, writes) == []
    reads = [
        entry("read", "cli:demo", patient=p, at=MONDAY + 9 * HOUR + 3_000 + n)
        for n, p in enumerate(everyone)
    ]
    assert [f.kind for f in _feed(detector, world, reads)] == ["volume-patients"]


def test_off_hours_against_the_users_own_pattern(world: World) -> None:
    detector = OffHours(world.settings)
    clinician = world.member(CLINICIAN)
    mine = [world.pseudonym(p) for p in world.clinic.panel(clinician)]
    assert _feed(detector, world, _workdays(world, clinician.user_id, mine, range(8, 17))) == []
    late = MONDAY + 7 * DAY + 17 * HOUR + 1800  # an hour after the usual end: fine
    assert (
        _feed(detector, world, [entry(actor=clinician.user_id, patient=mine[0], at=late)] * 3) == []
    )
    night = MONDAY + 7 * DAY + 3 * HOUR
    first = _feed(
        detector,
        world,
        [entry(actor=clinician.user_id, patient=mine[0], at=night, client="198.51.100.7")],
    )
    assert first == []  # one record: not yet
    found = _feed(
        detector,
        world,
        [entry(actor=clinician.user_id, patient=mine[1], at=night + 60, client="198.51.100.7")],
    )
    assert [f.kind for f in found] == ["off-hours"] and found[0].severity is Severity.HIGH


def test_night_shift_and_new_users_are_not_off_hours(world: World) -> None:
    detector = OffHours(world.settings)
    nurse = world.member(NURSE, 1)
    mine = [world.pseudonym(p) for p in world.clinic.panel(nurse)]
    nights = _workdays(world, nurse.user_id, mine, range(0, 6))
    assert _feed(detector, world, nights) == []
    assert (
        _feed(
            detector,
            world,
            [entry(actor=nurse.user_id, patient=mine[0], at=MONDAY + 8 * DAY + 2 * HOUR)] * 3,
        )
        == []
    )
    newcomer = world.member(FRONT_DESK)
    assert (
        _feed(
            detector,
            world,
            [entry(actor=newcomer.user_id, patient=mine[0], at=MONDAY + 3 * HOUR)] * 5,
        )
        == []
    )


def _login(actor: str, at: float, address: str, ok: bool = True) -> object:
    return entry(
        "login",
        actor,
        at=at,
        client=address,
        outcome="0" if ok else "4",
        detail=None if ok else "LoginFailed",
    )


def test_failed_logins_and_spraying(world: World) -> None:
    detector = CredentialAttacks(world.settings)
    attempts = [
        _login(f"account:{n % 7}", T0 + n * 20, "198.51.100.9", ok=False) for n in range(12)
    ]
    kinds = {f.kind for f in _feed(detector, world, attempts)}
    assert kinds == {"failed-logins-address", "password-spraying"}
    one_account = [
        _login("account:x", T0 + DAY + n * 30, f"203.0.113.{n}", ok=False) for n in range(5)
    ]
    assert {f.kind for f in _feed(detector, world, one_account)} == {"failed-logins-account"}


def test_a_typo_is_not_an_attack_but_success_after_failures_is(world: World) -> None:
    detector = CredentialAttacks(world.settings)
    member = world.member(CLINICIAN)
    account = world.facts.user(member.user_id).account  # type: ignore[union-attr]
    assert account is not None and account.startswith("account:")
    typo = [
        _login(account, T0, member.workstation, ok=False),
        _login(member.user_id, T0 + 20, member.workstation),
    ]
    assert _feed(detector, world, typo) == []
    guessed = [_login(account, T0 + HOUR + n * 10, "198.51.100.9", ok=False) for n in range(3)]
    guessed.append(_login(member.user_id, T0 + HOUR + 60, "198.51.100.9"))
    assert [f.kind for f in _feed(detector, world, guessed)] == ["login-after-failures"]


def test_new_address_followed_by_unusual_reads(world: World) -> None:
    detector = CredentialAttacks(world.settings)
    member = world.member(CLINICIAN)
    mine = [world.pseudonym(p) for p in world.clinic.panel(member)]
    week = []
    for day in range(4):
        at = MONDAY + day * DAY + 8 * HOUR
        week.append(_login(member.user_id, at, member.workstation))
        week += [
            entry(actor=member.user_id, patient=p, at=at + 600 + n, client=member.workstation)
            for n, p in enumerate(mine[:3])
        ]
    assert _feed(detector, world, week) == []
    laptop = MONDAY + 4 * DAY + 8 * HOUR
    usual = [_login(member.user_id, laptop, member.laptop)]
    usual += [
        entry(actor=member.user_id, patient=p, at=laptop + 60 + n, client=member.laptop)
        for n, p in enumerate(mine[:3])
    ]
    assert _feed(detector, world, usual) == []  # a new machine, ordinary work: quiet
    panel = world.clinic.panel(member)
    stranger = world.pseudonym(next(p for p in world.patients("normal") if p not in panel))
    night = MONDAY + 5 * DAY + 2 * HOUR
    stolen = [
        _login(member.user_id, night, "198.51.100.77"),
        entry(actor=member.user_id, patient=stranger, at=night + 30, client="198.51.100.77"),
    ]
    found = _feed(detector, world, stolen)
    assert [f.kind for f in found] == ["new-address-unusual-reads"]
