"""Narrative safety: txt-1 (basic formatting only; no script, forms or handlers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phivault.errors import InvalidResource
from phivault.fhir.narrative import narrative_problems, unsafe_narratives
from phivault.fhir.validation import validate_resource
from tests.shared_data import shared_dir

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def patient(div: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}}


@pytest.mark.parametrize(
    "div",
    [
        f"<div {XHTML}><p>Seen <b>today</b></p></div>",
        f'<div {XHTML}><table><tr><td style="color:red">x</td></tr></table></div>',
        f'<div {XHTML}><a href="https://example.org/x">link</a> <a href="#p1">here</a></div>',
        f'<div {XHTML}><img src="#pic" alt="scan"/></div>',
        f'<div {XHTML}><img src="data:image/png;base64,iVBORw0KGgo="/></div>',
        f"<div {XHTML}/>",  # empty (txt-2 is not enforced: harmless, common in real data)
    ],
)
def test_safe_narratives_pass(div: str) -> None:
    assert narrative_problems(div) == []
    assert validate_resource(patient(div))["text"]["div"] == div


@pytest.mark.parametrize(
    ("div", "rule"),
    [
        (f"<div {XHTML}>x<script>alert(1)</script></div>", "outside the basic HTML"),
        (f'<div {XHTML}><p onclick="steal()">x</p></div>', "event-handler"),
        (f'<div {XHTML}><a href="javascript:steal()">x</a></div>', "active or unknown scheme"),
        (f'<div {XHTML}><a href=" java\tscript:steal()">x</a></div>', "active or unknown scheme"),
        (f'<div {XHTML}><img src="data:image/svg+xml;base64,PHN2Zz4="/></div>', "scheme"),
        (f'<div {XHTML}>x<iframe src="https://evil.example"></iframe></div>', "outside"),
        (f"<div {XHTML}>x<form><input/></form></div>", "outside the basic HTML"),
        (f"<div {XHTML}>x<style>p{{}}</style></div>", "outside the basic HTML"),
    ],
)
def test_unsafe_narratives_are_refused_without_echoing_them(div: str, rule: str) -> None:
    assert any(rule in p for p in narrative_problems(div))
    with pytest.raises(InvalidResource) as caught:
        validate_resource(patient(div))
    assert "Patient.text.div" in caught.value.expression
    assert "steal" not in caught.value.message and "alert" not in caught.value.message


def test_contained_and_section_narratives_are_checked() -> None:
    bad = f"<div {XHTML}>x<script>1</script></div>"
    resource = {
        "resourceType": "Composition",
        "contained": [patient(bad)],
        "section": [{"section": [{"text": {"status": "generated", "div": bad}}]}],
    }
    paths = [p.split(":", 1)[0] for p in unsafe_narratives(resource)]
    assert paths == [
        "Composition.contained[0].text.div",
        "Composition.section[0].section[0].text.div",
    ]


def test_every_official_example_narrative_is_safe() -> None:
    examples = sorted((shared_dir() / "fhir" / "r4" / "examples").glob("*.json"))
    assert examples
    for path in examples:
        assert unsafe_narratives(json.loads(path.read_text())) == [], path.name
