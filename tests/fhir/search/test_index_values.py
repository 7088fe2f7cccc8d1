"""The value rules of FHIR R4 search (search.html): date precision, decimal precision, strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from phivault.fhir.search.index import (
    IndexEntry,
    date_range,
    decimal_range,
    normalize_string,
)
from phivault.types import index_row


def ts(*args: int, tz: timezone = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("2020", ts(2020, 1, 1), ts(2021, 1, 1)),
        ("2020-03", ts(2020, 3, 1), ts(2020, 4, 1)),
        ("2020-12", ts(2020, 12, 1), ts(2021, 1, 1)),
        ("2020-02", ts(2020, 2, 1), ts(2020, 3, 1)),
        ("2020-02-29", ts(2020, 2, 29), ts(2020, 3, 1)),
        ("1974-12-25", ts(1974, 12, 25), ts(1974, 12, 26)),
        ("1969-12-31", ts(1969, 12, 31), ts(1970, 1, 1)),
        ("2020-03-01T10:15Z", ts(2020, 3, 1, 10, 15), ts(2020, 3, 1, 10, 16)),
        ("2020-03-01T10:15:30Z", ts(2020, 3, 1, 10, 15, 30), ts(2020, 3, 1, 10, 15, 31)),
        # no timezone: UTC
        ("2020-03-01T10:15:30", ts(2020, 3, 1, 10, 15, 30), ts(2020, 3, 1, 10, 15, 31)),
        (
            "2020-03-01T10:15:30+02:00",
            ts(2020, 3, 1, 8, 15, 30),
            ts(2020, 3, 1, 8, 15, 31),
        ),
        (
            "2019-12-31T23:30:00-05:30",
            ts(2020, 1, 1, 5, 0, 0),
            ts(2020, 1, 1, 5, 0, 1),
        ),
        ("1", None, None),
    ],
)
def test_date_precision_ranges(text: str, lo: float | None, hi: float | None) -> None:
    found = date_range(text)
    if lo is None:
        assert found is None
    else:
        assert found == (lo, hi)


def test_fractional_seconds_keep_their_precision() -> None:
    found = date_range("2015-02-07T13:28:17.239+02:00")
    assert found is not None
    start = ts(2015, 2, 7, 11, 28, 17) + 0.239
    assert found[0] == pytest.approx(start)
    assert found[1] == pytest.approx(start + 0.001)
    half = date_range("2020-01-01T00:00:00.5Z")
    assert half is not None
    assert half == pytest.approx((ts(2020, 1, 1) + 0.5, ts(2020, 1, 1) + 0.6))


def test_dates_outside_the_datetime_range() -> None:
    found = date_range("9999")
    assert found is not None
    assert found[0] == ts(9999, 1, 1)
    assert found[1] == ts(9999, 12, 31) + timedelta(days=1).total_seconds()
    first = date_range("0001-01-01")
    assert first is not None and first[0] == ts(1, 1, 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "20-01-01",
        "2020-13",
        "2020-00",
        "2021-02-29",
        "2020-04-31",
        "2020-01-01T25:00:00Z",
        "2020-01-01T10:60:00Z",
        "2020-01-01T10:00:00+0200",
        "2020-01-01 10:00:00",
    ],
)
def test_invalid_dates_give_none(text: str) -> None:
    assert date_range(text) is None


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [
        (5.4, 5.35, 5.45),
        (100, 99.5, 100.5),
        (0, -0.5, 0.5),
        (-2.5, -2.55, -2.45),
        (0.001, 0.0005, 0.0015),
        (Decimal("5.40"), 5.395, 5.405),
        ("5.4", 5.35, 5.45),
        (Decimal("1E+3"), 500.0, 1500.0),
    ],
)
def test_decimal_precision_ranges(value: object, lo: float, hi: float) -> None:
    assert decimal_range(value) == pytest.approx((lo, hi))


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), "x", None, [1]])
def test_not_a_decimal(value: object) -> None:
    assert decimal_range(value) is None


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Chalmers", "chalmers"),
        ("  Peter   James ", "peter james"),
        ("Bénédicte", "benedicte"),
        ("du Marché", "du marche"),
        ("Müller-Lüdenscheidt", "muller-ludenscheidt"),
        ("STRAßE", "strasse"),
        ("Zoë\tO'Brien", "zoe o'brien"),
    ],
)
def test_string_normalisation(raw: str, normalized: str) -> None:
    assert normalize_string(raw) == normalized


def test_index_row_is_the_dataclass() -> None:
    row = ("code", "token", "http://loinc.org", "1234-5", "x", None, 1.5)
    built = index_row(row)
    assert built == IndexEntry(*row)
    assert hash(built) == hash(IndexEntry(*row))
    assert built.hi == 1.5
    with pytest.raises(AttributeError):
        built.value = "other"  # type: ignore[misc]
