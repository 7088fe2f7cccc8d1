"""The CapabilityStatement's conditionalDelete follows the server's setting.

R4 (capabilitystatement-definitions.html#CapabilityStatement.rest.resource.conditionalDelete,
code system conditional-delete-status): `single` means one resource per conditional delete,
`multiple` means several can be deleted by one."""

from __future__ import annotations

from phivault.fhir.capability import capability_statement


def _codes(max_conditional_deletes: int) -> set[str]:
    statement = capability_statement(
        "http://x/fhir", max_conditional_deletes=max_conditional_deletes
    )
    return {r["conditionalDelete"] for r in statement["rest"][0]["resource"]}


def test_one_delete_at_most_is_single() -> None:
    assert _codes(1) == {"single"}
    assert {r["conditionalDelete"] for r in capability_statement("b")["rest"][0]["resource"]} == {
        "single"
    }


def test_several_deletes_are_multiple() -> None:
    assert _codes(2) == {"multiple"}
    assert _codes(50) == {"multiple"}
    assert _codes(1) == {"single"}  # the cached single statement is not changed by the others
