"""Label (`data`) normalization for every variant the protocol describes, and by property."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import ROW_SCHEMA
from schemas.envelope import LABEL_ISSUES, UNSPLIT_ID_EVENTS
from transforms.stages.labels import LabelBuffers, Labels, label_text, normalize_labels, to_money

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


# --- properties --------------------------------------------------------------------------------

# What orjson.loads can produce (it reads integers beyond 64 bits as floats), plus NaN/inf,
# which only other readers could hand over.
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["12.5", "A;B|C", " ", "NaN", "1e400", "-0.005"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
LABEL_KEYS = st.sampled_from(["ids", "id", "transId", "value", "", " ", "locale", "Locale"]) | st.text(max_size=6)
DATA = st.dictionaries(LABEL_KEYS, JSON_VALUES, max_size=6)
EVENTS = st.sampled_from(["page_view", "purchase", "category_view", "brand_view", "product_page", "custom"])


@settings(max_examples=300, deadline=None)
@given(DATA, EVENTS)
def test_never_raises_and_types_are_right(data: dict, event: str) -> None:
    labels = normalize_labels(data, event)
    assert isinstance(labels.ids, list)
    assert all(isinstance(i, str) and i.strip() == i and i for i in labels.ids)
    assert labels.trans_id is None or isinstance(labels.trans_id, str)
    if labels.value is not None:
        assert isinstance(labels.value, Decimal)
        assert labels.value.as_tuple().exponent == -2
        assert abs(labels.value) < Decimal(10) ** 29
    keys = [lab["key"] for lab in labels.labels]
    assert keys == sorted(keys)
    for lab in labels.labels:
        assert set(lab) == {"key", "value"}
        assert isinstance(lab["key"], str) and lab["key"].strip()
        assert lab["value"] is None or isinstance(lab["value"], str)
    assert set(labels.flags) <= set(LABEL_ISSUES)
    assert len(labels.flags) == len(set(labels.flags))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.floats(), st.decimals().map(str), st.text(max_size=10),
    st.floats(min_value=1e20, max_value=1e30), st.integers(10**25, 10**30), st.decimals(min_value=10**25).map(str),
))
def test_money_never_raises(value: object) -> None:
    amount, flag = to_money(value)
    assert (amount is None) != (flag is None)
    if amount is not None:
        assert amount.as_tuple().exponent == -2


@settings(max_examples=300, deadline=None)
@given(DATA, EVENTS)
def test_renormalizing_the_output_shape_is_stable(data: dict, event: str) -> None:
    first = normalize_labels(data, event)
    again = {
        "ids": first.ids,
        "transId": first.trans_id,
        "value": None if first.value is None else str(first.value),
        **{lab["key"]: lab["value"] for lab in first.labels},
    }
    second = normalize_labels(again, event)
    assert second.ids == first.ids
    assert second.trans_id == first.trans_id
    assert second.value == first.value
    assert second.labels == first.labels
    assert second.flags == []


# --- many events at once (the normalize stage's path) ------------------------------------------

BATCH = [
    ({"ids": "A;B", "locale": "fr", "value": 3}, "purchase", False),
    ({}, "page_view", True),
    (None, "page_view", False),
    ({"id": "X", "value": "1.5", "transId": 7}, "product_page", True),
    ({"": 1, "k": [1], "ids": [True, "C"]}, "purchase", True),
    ({"transId": "", "z": None, "a": 2.5}, "custom", False),
]
LABEL_TYPES = {name: ROW_SCHEMA.field(name).type for name in ("ids", "transId", "value", "labels", "quality_flags")}


def _one_by_one(data: dict | None, name: str, filled: bool) -> Labels:
    labels = normalize_labels(data, name)
    return labels._replace(flags=labels.flags + ["timestamp:filled"] * filled)


def test_a_filled_timestamp_is_flagged_after_the_label_flags() -> None:
    buffers = LabelBuffers()
    buffers.add([{}, {"ids": [{}]}, {"locale": "fr"}], ["page_view"] * 3, [True, True, False])
    assert [buffers.event(i).flags for i in range(3)] == [["timestamp:filled"], ["ids:invalid", "timestamp:filled"], []]
    assert "timestamp:filled" in LABEL_ISSUES


def test_without_filled_nothing_is_flagged_filled() -> None:
    buffers = LabelBuffers()
    buffers.add([{}, {"a": "b"}], ["page_view"] * 2)
    assert [buffers.event(i).flags for i in range(2)] == [[], []]


def test_a_batch_gives_each_event_what_it_gives_alone() -> None:
    buffers = LabelBuffers()
    datas, names, filled = zip(*BATCH)
    buffers.add(datas[:4], names[:4], filled[:4])
    buffers.add(datas[4:], names[4:], filled[4:])  # a second call appends
    assert [buffers.event(i) for i in range(len(BATCH))] == [_one_by_one(*event) for event in BATCH]
    assert buffers.event(0) == Labels(["A", "B"], None, Decimal("3.00"), [{"key": "locale", "value": "fr"}], [])
    assert buffers.event(3).flags == ["timestamp:filled"]
    assert buffers.event(4).flags == ["ids:invalid", "labels:blank_key", "timestamp:filled"]


def test_label_columns_as_arrow_arrays_of_the_row_schema() -> None:
    buffers = LabelBuffers()
    datas, names, filled = zip(*BATCH)
    buffers.add(datas, names, filled)
    arrays = buffers.arrays(LABEL_TYPES)
    assert set(arrays) == set(LABEL_TYPES)
    for name, array in arrays.items():
        assert array.type == LABEL_TYPES[name], name
        assert len(array) == len(BATCH), name
    expected = [_one_by_one(*event) for event in BATCH]
    assert arrays["ids"].to_pylist() == [e.ids for e in expected]
    assert arrays["transId"].to_pylist() == [e.trans_id for e in expected]
    assert arrays["value"].to_pylist() == [e.value for e in expected]
    assert arrays["labels"].to_pylist() == [e.labels for e in expected]
    assert arrays["quality_flags"].to_pylist() == [e.flags for e in expected]
    assert arrays["labels"].to_pylist()[5] == [{"key": "a", "value": "2.5"}, {"key": "z", "value": None}]


def test_no_events_give_empty_columns() -> None:
    arrays = LabelBuffers().arrays(LABEL_TYPES)
    assert {name: (len(a), a.type) for name, a in arrays.items()} == {name: (0, t) for name, t in LABEL_TYPES.items()}
