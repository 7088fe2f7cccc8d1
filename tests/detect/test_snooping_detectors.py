"""Unexplained access and snooping, against a real clinic's records and blind indexes."""

from __future__ import annotations

from phivault.detect.detectors.snooping import Snooping
from phivault.detect.detectors.unexplained import UnexplainedAccess
from phivault.detect.eval.clinic import BILLING, CLINICIAN, FRONT_DESK, NURSE
from phivault.detect.model import Severity
from tests.detect.conftest import World
from tests.detect.support import T0, entry


def test_unexplained_access_is_flagged_and_escalates(world: World) -> None:
    detector = UnexplainedAccess(world.settings)
    desk = world.member(FRONT_DESK)
    quiet = [
        p
        for p in world.patients("normal")
        if p.pid not in {v.patient.pid for v in world.clinic.visits}
    ]
    found = list(
        detector.observe(
            entry(actor=desk.user_id, patient=world.pseudonym(quiet[0]), rtype="Patient"),
            world.facts,
        )
    )
    assert len(found) == 1 and found[0].severity is Severity.MEDIUM
    assert found[0].actor == desk.user_id and "no care relationship" in found[0].title
    assert found[0].details["explanation_score"] == "0.00"
    # The same patient again: no new finding; more patients: the day's alert turns high.
    assert (
        list(
            detector.observe(
                entry(actor=desk.user_id, patient=world.pseudonym(quiet[0])), world.facts
            )
        )
        == []
    )
    for p in quiet[1:3]:
        last = list(
            detector.observe(
                entry(actor=desk.user_id, patient=world.pseudonym(p), at=T0 + 60), world.facts
            )
        )
    assert last[0].severity is Severity.HIGH and last[0].group == found[0].group


def test_explained_accesses_are_not_flagged(world: World) -> None:
    detector = UnexplainedAccess(world.settings)
    clinician = world.member(CLINICIAN)
    mine = world.clinic.panel(clinician)[0]
    booked = world.clinic.visits[0].patient
    desk, biller = world.member(FRONT_DESK), world.member(BILLING)
    quiet = world.unbooked()
    cases = [
        entry(actor=clinician.user_id, patient=world.pseudonym(mine)),  # care team
        entry(actor=desk.user_id, patient=world.pseudonym(booked)),  # a booked visit
        entry(actor=biller.user_id, patient=world.pseudonym(booked)),  # billing a visit
        entry(
            actor=clinician.user_id, patient=world.pseudonym(quiet), purpose="ETREAT"
        ),  # break-glass
        entry(actor="system-client", patient=world.pseudonym(quiet)),  # not a user
        entry(actor=desk.user_id, patient=world.canaries[0]),  # the canary detector's
    ]
    for case in cases:
        assert list(detector.observe(case, world.facts)) == [], case
    # A patient the user registered is explained by that, for a week.
    new = "new-patient-pseudonym"
    assert (
        list(
            detector.observe(
                entry("create", desk.user_id, rtype="Patient", patient=new), world.facts
            )
        )
        == []
    )
    assert (
        list(detector.observe(entry(actor=desk.user_id, patient=new, at=T0 + 3600), world.facts))
        == []
    )


def test_refused_attempts_count_as_unexplained(world: World) -> None:
    detector = UnexplainedAccess(world.settings)
    nurse = world.member(NURSE)
    outsider = next(p for p in world.patients("normal") if p not in world.clinic.panel(nurse))
    refused = entry(
        actor=nurse.user_id, patient=world.pseudonym(outsider), outcome="4", detail="Forbidden"
    )
    found = list(detector.observe(refused, world.facts))
    assert found and found[0].severity is Severity.HIGH and "refused" in found[0].title
    other_failure = entry(
        actor=nurse.user_id, patient=world.pseudonym(outsider), outcome="4", detail="NotFound"
    )
    assert list(UnexplainedAccess(world.settings).observe(other_failure, world.facts)) == []


def test_snooping_on_family_co_workers_and_vips(world: World) -> None:
    detector = Snooping(world.settings)
    desk = world.member(FRONT_DESK)
    relative = next(p for p in world.patients("relative") if p.of_staff == desk.key)
    found = list(
        detector.observe(entry(actor=desk.user_id, patient=world.pseudonym(relative)), world.facts)
    )
    assert [f.kind for f in found] == ["family-address"] and found[0].severity is Severity.HIGH
    co_worker = next(p for p in world.patients("co-worker") if p.of_staff != desk.key)
    found = list(
        detector.observe(entry(actor=desk.user_id, patient=world.pseudonym(co_worker)), world.facts)
    )
    assert [f.kind for f in found] == ["co-worker"]
    owner = next(s for s in world.clinic.staff if s.key == co_worker.of_staff)
    own = list(
        detector.observe(
            entry(actor=owner.user_id, patient=world.pseudonym(co_worker)), world.facts
        )
    )
    assert [f.kind for f in own] == ["own-record"] and own[0].severity is Severity.MEDIUM
    vip = world.patients("vip")[0]
    found = list(
        detector.observe(entry(actor=desk.user_id, patient=world.pseudonym(vip)), world.facts)
    )
    assert [f.kind for f in found] == ["vip"]
    assert all(world.pseudonym(vip) not in f.title for f in found)  # names no patient


def test_snooping_negatives(world: World) -> None:
    detector = Snooping(world.settings)
    desk = world.member(FRONT_DESK)
    ordinary = world.patients("normal")[0]
    assert (
        list(
            detector.observe(
                entry(actor=desk.user_id, patient=world.pseudonym(ordinary)), world.facts
            )
        )
        == []
    )
    vip = world.patients("vip")[0]
    # The VIP's own clinician, treating them, is not snooping.
    treating = entry(actor=vip.clinician.user_id, patient=world.pseudonym(vip))
    assert list(detector.observe(treating, world.facts)) == []
    # A surname shared by many patients means nothing: no staff member is kin to a stranger.
    for member in world.clinic.staff:
        surname, address = world.facts.kin(member.practitioner)
        strangers = {world.pseudonym(p) for p in world.patients("normal")}
        assert not (surname | address) & strangers
