"""Validate stage: envelopes against the pandera model derived from ENVELOPE, and the rules that derivation
gives. (The parse stage's tests are in test_parse.py.)"""

from __future__ import annotations

import json

import orjson
import pytest

from schemas.envelope import (
    ARRAY,
    BOOLEAN,
    ENVELOPE,
    MAX_ID_LENGTH,
    NULL,
    NUMBER,
    OBJECT,
    STRING,
)
from schemas.validation import WIRE_SUFFIX, all_rules, envelope_schema, value_dtype
from tests.factory import KEY, codes, good
from transforms.core.records import PROCESSOR, ImportContext, RecordBatch
from transforms.stages.validate import validate_batch

CTX = ImportContext("run-parse", 1_764_000_000_000_000)
URI = "gs://bucket/export/part-0001.ndjson"


# --- validate ----------------------------------------------------------------------------------


def record_batch(*records: dict, first: int = 1) -> RecordBatch:
    batch = RecordBatch(URI)
    for i, r in enumerate(records):
        batch.append(r, json.dumps(r).encode(), first + i, None)  # json: CSV cells may hold ints beyond 64 bits
    return batch


def validate_one(record: dict) -> list[str]:
    """Reason codes of one record ([] when it passes)."""
    kept, dead = validate_batch(record_batch(record), CTX)
    assert len(kept) + len(dead) == 1
    return sorted(codes(dead[0])) if dead else []


def without(record: dict, *names: str) -> dict:
    return {k: v for k, v in record.items() if k not in names}


def test_good_envelope_passes() -> None:
    batch = record_batch(good(1), good(2), first=3)
    kept, dead = validate_batch(batch, CTX)
    assert dead == []
    assert kept.records == [good(1), good(2)]
    assert kept.line_numbers == [3, 4]


def test_minimal_envelope_passes() -> None:
    minimal = without(good(1), "ua", "data", "clientId", "timestamp")
    assert validate_one(minimal) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (good(key="not-a-company-id"), ["key:pattern"]),
        (good(key="61A095FDD8D2E20011544831"), ["key:pattern"]),  # upper-case hex
        (good(key=KEY + "\n"), ["key:pattern"]),
        (good(key=KEY + "0"), ["key:pattern"]),
        (without(good(), "key"), ["key:missing"]),
        (good(key=5), ["key:type"]),
        (good(key=None), ["key:type"]),
        (good(tmpId=""), ["tmpId:empty"]),
        (good(eventId=""), ["eventId:empty"]),
        (good(eventId="e" * (MAX_ID_LENGTH + 1)), ["eventId:too_long"]),
        (good(name=""), ["name:empty"]),
        (good(v=2), ["v:unsupported"]),
        (good(v=0.5), ["v:unsupported"]),
        (good(v=10**30), ["v:unsupported"]),
        (good(v=True), ["v:type"]),
        (good(v="1"), ["v:type"]),
        (without(good(), "v"), ["v:missing"]),
        (good(data=[]), ["data:type"]),
        (good(data=[{"ids": ["A"]}]), ["data:type"]),
        (good(data="{}"), ["data:type"]),
        (good(timestamp="1763000000000"), ["timestamp:type"]),
        (good(timestamp=True), ["timestamp:type"]),
        (good(url=None), ["url:type"]),
        (good(ua=5), ["ua:type"]),
        (good(clientId=123), ["clientId:type"]),
    ],
)
def test_each_rule_gives_its_reason_code(record: dict, expected: list[str]) -> None:
    assert validate_one(record) == expected


@pytest.mark.parametrize(
    "record",
    [
        good(clientId=None),
        without(good(), "clientId"),
        good(clientId="user-42"),
        without(good(), "ua"),
        good(ua=None),
        good(data=None),
        without(good(), "data"),
        good(data={}),
        good(timestamp=None),
        without(good(), "timestamp"),
        good(timestamp=1_763_000_000.5),
        good(v=1.0),
        good(url="unknown"),
        good(url=""),
        good(tmpId="android_id"),
        good(eventId="é" * MAX_ID_LENGTH),  # lengths are in characters, not bytes
        good(extra_field="ignored"),
    ],
)
def test_accepted_variants(record: dict) -> None:
    assert validate_one(record) == []


def test_a_record_breaking_three_rules_reports_all_three() -> None:
    record = good(key="nothex", tmpId="", v=2)
    kept, [d] = validate_batch(record_batch(good(1), record, good(2)), CTX)
    assert [r["eventId"] for r in kept.records] == [good(1)["eventId"], good(2)["eventId"]]
    assert sorted(codes(d)) == ["key:pattern", "tmpId:empty", "v:unsupported"]
    by_code = {r["code"]: r for r in d["reasons"]}
    assert (by_code["key:pattern"]["field"], by_code["key:pattern"]["value"]) == ("key", "nothex")
    assert (by_code["tmpId:empty"]["field"], by_code["tmpId:empty"]["value"]) == ("tmpId", "")
    assert (by_code["v:unsupported"]["field"], by_code["v:unsupported"]["value"]) == ("v", "2")


def test_an_integer_beyond_64_bits_is_reported_not_raised() -> None:
    # CSV cells are read with int(): `v` or `timestamp` can be larger than orjson can write
    kept, [d] = validate_batch(record_batch(good(v=10**30)), CTX)
    assert len(kept) == 0
    assert d["reasons"] == [{"code": "v:unsupported", "field": "v", "message": "`v` must be 1.",
                             "value": str(10**30)}]


def test_type_and_missing_problems_of_different_fields_all_reported() -> None:
    record = without(good(eventId=7, data=[], timestamp="x"), "name")
    assert validate_one(record) == ["data:type", "eventId:type", "name:missing", "timestamp:type"]


def test_dead_letters_keep_raw_payload_and_origin_exactly() -> None:
    raw_bad = b'{"key":"nothex","tmpId":"t","eventId":"e","name":"n","url":"u","v":1,  "note":"\\u00e9"}'
    bad = orjson.loads(raw_bad)
    batch = RecordBatch(URI)
    batch.append(good(1), orjson.dumps(good(1)), 41, None)
    batch.append(bad, raw_bad, 42, 3)
    batch.append(good(2), orjson.dumps(good(2)), 43, None)
    kept, [d] = validate_batch(batch, CTX)
    assert kept.line_numbers == [41, 43]
    assert kept.indexes == [None, None]
    assert kept.raws == [orjson.dumps(good(1)), orjson.dumps(good(2))]
    assert d["stage"] == "validate"
    assert d["raw_payload"] == raw_bad.decode()
    assert d["raw_payload_base64"] is None
    assert d["raw_bytes"] == len(raw_bad)
    assert (d["source_uri"], d["source_line"], d["source_index"]) == (URI, 42, 3)
    assert (d["run_id"], d["processor"], d["rejected_at"]) == (CTX.run_id, PROCESSOR, CTX.started_micros)


def test_every_row_fails_alone() -> None:
    records = [good(i, v=2) if i % 2 else good(i) for i in range(10)]
    kept, dead = validate_batch(record_batch(*records), CTX)
    assert kept.line_numbers == [1, 3, 5, 7, 9]
    assert [d["source_line"] for d in dead] == [2, 4, 6, 8, 10]
    assert all(codes(d) == ["v:unsupported"] for d in dead)


def test_empty_batch() -> None:
    kept, dead = validate_batch(RecordBatch(URI), CTX)
    assert (len(kept), dead) == (0, [])


# --- the rules are derived from ENVELOPE -------------------------------------------------------


def _wrong_type_value(accepted: tuple[str, ...]) -> object:
    for wire, value in ((STRING, "x"), (NUMBER, 5), (BOOLEAN, True), (OBJECT, {"a": 1}), (ARRAY, [1])):
        if wire not in accepted:
            return value
    raise AssertionError(f"every wire type is accepted: {accepted}")


def test_rule_codes_follow_envelope_declarations() -> None:
    codes_ = {r.code for r in all_rules()}
    expected = set()
    for f in ENVELOPE:
        expected.add(f"{f.name}:type")
        if f.required:
            expected.add(f"{f.name}:missing")
        if f.pattern:
            expected.add(f"{f.name}:pattern")
        if f.min_length:
            expected.add(f"{f.name}:empty")
        if f.max_length:
            expected.add(f"{f.name}:too_long")
        if f.equals is not None:
            expected.add(f"{f.name}:unsupported")
    expected |= {"eventId:blank", "tmpId:blank"}  # whitespace alone is no id
    expected |= {"eventId:nul"}  # the emulator's MERGE fails on a NUL in the dedupe key
    assert codes_ == expected
    assert all(r.field == r.code.split(":")[0] for r in all_rules())


def test_schema_columns_follow_envelope() -> None:
    schema, _ = envelope_schema()
    expected = {f.name + WIRE_SUFFIX for f in ENVELOPE} | {f.name for f in ENVELOPE if value_dtype(f) is not None}
    assert set(schema.columns) == expected


@pytest.mark.parametrize("field", [f for f in ENVELOPE if f.required], ids=lambda f: f.name)
def test_every_required_field_missing_gives_its_missing_code(field) -> None:
    assert validate_one(without(good(), field.name)) == [f"{field.name}:missing"]


@pytest.mark.parametrize("field", [f for f in ENVELOPE if not f.required], ids=lambda f: f.name)
def test_every_optional_field_may_be_absent(field) -> None:
    assert validate_one(without(good(), field.name)) == []


@pytest.mark.parametrize("field", list(ENVELOPE), ids=lambda f: f.name)
def test_every_field_with_a_wrong_wire_type_gives_its_type_code(field) -> None:
    assert validate_one(good(**{field.name: _wrong_type_value(field.accepted)})) == [f"{field.name}:type"]


@pytest.mark.parametrize("field", list(ENVELOPE), ids=lambda f: f.name)
def test_null_accepted_exactly_for_nullable_fields(field) -> None:
    expected = [] if NULL in field.accepted else [f"{field.name}:type"]
    assert validate_one(good(**{field.name: None})) == expected


@pytest.mark.parametrize("field", [f for f in ENVELOPE if f.max_length], ids=lambda f: f.name)
def test_every_max_length_is_enforced_at_its_limit(field) -> None:
    assert validate_one(good(**{field.name: "a" * field.max_length})) == []
    assert validate_one(good(**{field.name: "a" * (field.max_length + 1)})) == [f"{field.name}:too_long"]
