"""Label (`data`) normalization by property: any JSON `data` gives well-typed labels, never an exception."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import LABEL_ISSUES
from transforms.stages.labels import normalize_labels, to_money

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
