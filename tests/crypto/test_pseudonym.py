import hmac

import pytest

from phivault.crypto.pseudonym import PSEUDONYM_HEX_LEN, Pseudonyms

KEY = bytes(range(32))


def _reference(key: bytes, compartment: str) -> str:
    # The definition every existing audit log was written with: it must never change.
    return hmac.new(key, compartment.encode(), "sha256").hexdigest()[:32]


def test_pseudonyms_match_the_definition_logs_were_written_with() -> None:
    names = Pseudonyms(KEY)
    for compartment in ("Patient/1", "Patient/ä-ü", "Patient/" + "x" * 200, ""):
        assert names(compartment) == _reference(KEY, compartment)
        assert len(names(compartment)) == PSEUDONYM_HEX_LEN


def test_pseudonyms_differ_by_compartment_and_key() -> None:
    names, other = Pseudonyms(KEY), Pseudonyms(bytes(32))
    assert names("Patient/1") != names("Patient/2")
    assert names("Patient/1") != other("Patient/1")


def test_a_small_cache_evicts_and_still_answers_right() -> None:
    names = Pseudonyms(KEY, cache_size=2)
    first = [names(f"Patient/{i}") for i in range(10)]
    again = [names(f"Patient/{i}") for i in range(10)]
    assert first == again == [_reference(KEY, f"Patient/{i}") for i in range(10)]


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Pseudonyms(KEY, cache_size=0)
