"""Label (`data`) normalization for every variant the protocol describes (by property:
test_labels_properties.py; many events at once: test_labels_batch.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.envelope import LABEL_ISSUES, UNSPLIT_ID_EVENTS
from transforms.stages.labels import Labels, label_text, normalize_labels, to_money

# --- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "event", "ids"),
    [
        ({"ids": ["SKU-1", "SKU-2", "SKU-3"]}, "purchase", ["SKU-1", "SKU-2", "SKU-3"]),
        ({"ids": ["SKU-1"]}, "product_page", ["SKU-1"]),
        ({"ids": []}, "page_view", []),
        # a single string is split on ; , | (web tag behaviour), items stripped, blanks dropped
        ({"ids": "SKU-1"}, "product_page", ["SKU-1"]),
        ({"ids": "A;B"}, "purchase", ["A", "B"]),
        ({"ids": "A,B"}, "purchase", ["A", "B"]),
        ({"ids": "A|B"}, "purchase", ["A", "B"]),
        ({"ids": " A ; B,C | D "}, "add_cart", ["A", "B", "C", "D"]),
        ({"ids": "A;;B,"}, "purchase", ["A", "B"]),
        ({"ids": ""}, "purchase", []),
        # ... but not for category and brand events: one id that contains separators
        ({"ids": "Shoes;Men|Sale"}, "category_view", ["Shoes;Men|Sale"]),
        ({"ids": "Dolce,Gabbana"}, "brand_view", ["Dolce,Gabbana"]),
        # list items are never split
        ({"ids": ["A;B", "C"]}, "purchase", ["A;B", "C"]),
        # blank and null items dropped, items stripped
        ({"ids": [" A ", "", "  ", None, "B"]}, "purchase", ["A", "B"]),
        # numbers in ids become their canonical text
        ({"ids": [123, 4.5, "X"]}, "purchase", ["123", "4.5", "X"]),
        ({"ids": 987}, "product_page", ["987"]),
        # Android sends data.id (one string) instead of ids, never split
        ({"id": "SKU-9"}, "product_page", ["SKU-9"]),
        ({"id": "A;B"}, "product_hover", ["A;B"]),
        ({"id": "Women"}, "category_view", ["Women"]),
        ({"id": 42}, "brand_view", ["42"]),
        # ids wins over id when both are present
        ({"ids": ["A"], "id": "B"}, "product_page", ["A"]),
        # null ids: no ids, no flag
        ({"ids": None}, "purchase", []),
    ],
)
def test_ids_variants(data: dict, event: str, ids: list[str]) -> None:
    labels = normalize_labels(data, event)
    assert labels.ids == ids
    assert labels.flags == []


def test_unsplit_events_are_the_protocol_ones() -> None:
    assert UNSPLIT_ID_EVENTS == {"category_view", "brand_view"}


def test_android_id_is_consumed_not_a_free_label() -> None:
    labels = normalize_labels({"id": "SKU-9", "locale": "fr"}, "product_page")
    assert labels.ids == ["SKU-9"]
    assert labels.labels == [{"key": "locale", "value": "fr"}]


def test_id_beside_ids_stays_a_free_label() -> None:
    labels = normalize_labels({"ids": ["A"], "id": "B"}, "product_page")
    assert labels.labels == [{"key": "id", "value": "B"}]


@pytest.mark.parametrize(
    ("raw", "ids"),
    [
        (["A", {"x": 1}, "B"], ["A", "B"]),
        (["A", True], ["A"]),
        (["A", ["nested"]], ["A"]),
        ({"a": 1}, []),
        (True, []),
    ],
)
def test_invalid_ids_items_dropped_and_flagged(raw: object, ids: list[str]) -> None:
    labels = normalize_labels({"ids": raw}, "purchase")
    assert labels.ids == ids
    assert labels.flags == ["ids:invalid"]


# --- transId -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trans", "expected", "flags"),
    [
        ("ORDER-1", "ORDER-1", []),
        (None, None, []),  # iOS purchases without one
        (12345, "12345", []),
        (12.5, "12.5", []),
        ({"id": "x"}, None, ["transId:invalid"]),
        (["x"], None, ["transId:invalid"]),
        (True, None, ["transId:invalid"]),
    ],
)
def test_trans_id(trans: object, expected: str | None, flags: list[str]) -> None:
    labels = normalize_labels({"ids": ["A"], "transId": trans}, "purchase")
    assert labels.trans_id == expected
    assert labels.flags == flags


def test_absent_trans_id() -> None:
    labels = normalize_labels({"ids": ["A"]}, "purchase")
    assert labels.trans_id is None
    assert labels.flags == []


# --- value -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (120, Decimal("120.00")),
        (0, Decimal("0.00")),
        (129.9, Decimal("129.90")),
        (46.599998474121094, Decimal("46.60")),  # 32-bit float artifact of 46.6
        (19.989999771118164, Decimal("19.99")),
        ("49.9", Decimal("49.90")),
        (" 12 ", Decimal("12.00")),
        ("1e3", Decimal("1000.00")),
        (2.675, Decimal("2.68")),  # half-up on the printed decimal, not the binary fraction under it
        (0.125, Decimal("0.13")),
        (-0.125, Decimal("-0.13")),
        ("2.665", Decimal("2.67")),
        (1.005, Decimal("1.01")),
        (-5, Decimal("-5.00")),
        (0.001, Decimal("0.00")),
        # the largest values that fit BigQuery NUMERIC (29 integer digits)
        (10**28, Decimal("10000000000000000000000000000.00")),
        (1e28, Decimal("10000000000000000000000000000.00")),
        ("99999999999999999999999999999.99", Decimal("99999999999999999999999999999.99")),
        ("99999999999999999999999999999", Decimal("99999999999999999999999999999.00")),
    ],
)
def test_value_rounded_half_up_to_cents(value: object, expected: Decimal) -> None:
    labels = normalize_labels({"value": value}, "purchase")
    assert labels.value == expected
    assert labels.value.as_tuple().exponent == -2
    assert labels.flags == []


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        ("abc", "value:not_a_number"),
        ("", "value:not_a_number"),
        ("12,50", "value:not_a_number"),
        (True, "value:not_a_number"),
        (False, "value:not_a_number"),
        ("NaN", "value:not_a_number"),
        ("nan", "value:not_a_number"),
        ("Infinity", "value:not_a_number"),
        ("-inf", "value:not_a_number"),
        (float("nan"), "value:not_a_number"),
        (float("inf"), "value:not_a_number"),
        ({"amount": 1}, "value:not_a_number"),
        ([1], "value:not_a_number"),
        (1e29, "value:out_of_range"),
        (-1e29, "value:out_of_range"),
        (10**29, "value:out_of_range"),
        ("1e300", "value:out_of_range"),
        (1.7976931348623157e308, "value:out_of_range"),
        ("99999999999999999999999999999.995", "value:out_of_range"),  # rounds up to 30 digits
    ],
)
def test_bad_value_nulled_and_flagged(value: object, flag: str) -> None:
    labels = normalize_labels({"ids": ["A"], "value": value}, "purchase")
    assert labels.value is None
    assert labels.flags == [flag]
    assert labels.ids == ["A"]
    assert flag in LABEL_ISSUES


def test_null_or_absent_value_is_not_a_problem() -> None:
    assert normalize_labels({"value": None}, "purchase").value is None
    assert normalize_labels({"value": None}, "purchase").flags == []
    assert normalize_labels({"ids": ["A"]}, "purchase").value is None


def test_to_money_matches_labels_value() -> None:
    assert to_money(46.599998474121094) == (Decimal("46.60"), None)
    assert to_money("x") == (None, "value:not_a_number")
    assert to_money(None) == (None, "value:not_a_number")


# --- free labels -------------------------------------------------------------------------------


def test_free_labels_as_canonical_text_sorted_by_key() -> None:
    data = {
        "locale": "fr-FR",
        "count": 3,
        "ratio": 0.5,
        "big": 1e20,
        "flag": True,
        "off": False,
        "nothing": None,
        "nested": {"z": 1, "a": [1, "x", None], "m": {"b": 2, "a": 1}},
        "list": [3, 1, 2],
        "ids": ["A"],
        "transId": "T",
        "value": 10,
    }
    labels = normalize_labels(data, "purchase")
    assert labels.labels == [
        {"key": "big", "value": "1e+20"},
        {"key": "count", "value": "3"},
        {"key": "flag", "value": "true"},
        {"key": "list", "value": "[3,1,2]"},
        {"key": "locale", "value": "fr-FR"},
        {"key": "nested", "value": '{"a":[1,"x",null],"m":{"a":1,"b":2},"z":1}'},
        {"key": "nothing", "value": None},
        {"key": "off", "value": "false"},
        {"key": "ratio", "value": "0.5"},
    ]
    assert labels.ids == ["A"]
    assert labels.trans_id == "T"
    assert labels.value == Decimal("10.00")
    assert labels.flags == []


def test_free_label_keys_keep_their_case_and_spaces() -> None:
    labels = normalize_labels({"B": "1", "a": "2", " c ": "3"}, "page_view")
    assert labels.labels == [{"key": " c ", "value": "3"}, {"key": "B", "value": "1"}, {"key": "a", "value": "2"}]


def test_blank_keys_dropped_and_flagged_once() -> None:
    labels = normalize_labels({"": "x", "   ": "y", "\t": 1, "locale": "fr"}, "page_view")
    assert labels.labels == [{"key": "locale", "value": "fr"}]
    assert labels.flags == ["labels:blank_key"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("x", "x"),
        ("", ""),
        (1, "1"),
        (-7, "-7"),
        (1.25, "1.25"),
        (True, "true"),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ([], "[]"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_label_text(value: object, text: str | None) -> None:
    assert label_text(value) == text


@pytest.mark.parametrize("data", [None, {}])
def test_empty_data(data: dict | None) -> None:
    assert normalize_labels(data, "page_view") == Labels([], None, None, [], [])


def test_several_problems_give_several_flags() -> None:
    labels = normalize_labels({"ids": [{}], "transId": [], "value": "x", "": 1}, "purchase")
    assert labels.flags == ["ids:invalid", "transId:invalid", "value:not_a_number", "labels:blank_key"]
