"""_elements with nested paths, worked out by hand from the R4 element definitions:
Observation.status and .code are 1..1, ObservationComponent.code is 1..1, HumanName and
Quantity have no mandatory children."""

from __future__ import annotations

from phivault.fhir.search.shaping import SUBSETTED, element_tree, shape

OBS = {
    "resourceType": "Observation",
    "id": "o",
    "status": "final",
    "code": {"text": "bp"},
    "subject": {"reference": "Patient/p", "display": "P"},
    "component": [
        {
            "code": {"text": "systolic"},
            "valueQuantity": {"value": 120, "unit": "mmHg"},
            "interpretation": [{"text": "normal"}],
        }
    ],
    "note": [{"text": "n"}],
}


def test_tree_merges_paths_and_whole_elements_win() -> None:
    assert element_tree(("name.family", "name.given", "gender")) == {
        "name": {"family": {}, "given": {}},
        "gender": {},
    }
    assert element_tree(("name", "name.family")) == {"name": {}}


def test_nested_path_keeps_mandatory_children_of_the_backbone() -> None:
    found = shape(OBS, None, ("component.value.unit",))
    assert found is not None
    assert found["component"] == [{"code": {"text": "systolic"}, "valueQuantity": {"unit": "mmHg"}}]
    assert {"status", "code"} <= set(found) and "note" not in found and "subject" not in found
    assert found["meta"]["tag"] == [SUBSETTED]


def test_typed_choice_name_and_primitive_extensions() -> None:
    found = shape(OBS, None, ("component.valueQuantity", "subject.reference"))
    assert found is not None
    assert found["component"][0]["valueQuantity"] == {"value": 120, "unit": "mmHg"}
    assert found["subject"] == {"reference": "Patient/p"}
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "F", "_family": {"extension": []}, "given": ["G"]}],
    }
    trimmed = shape(patient, None, ("name.family",))
    assert trimmed is not None and trimmed["name"] == [
        {"family": "F", "_family": {"extension": []}}
    ]
