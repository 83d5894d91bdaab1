"""Label (`data`) normalization of many events at once (the normalize stage's path): the same labels as one
by one, and as Arrow columns of the row schema."""

from __future__ import annotations

from decimal import Decimal

from schemas.arrow import ROW_SCHEMA
from schemas.envelope import LABEL_ISSUES
from transforms.stages.labels import LabelBuffers, Labels, normalize_labels

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
