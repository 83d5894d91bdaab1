"""The validation model's rules and the wire frame it runs on: what each rule says in a dead letter,
how wire types are told apart (absent, null, a wrong type), and that the parse stage's flat field
values give the same frame as the records."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.envelope import ENVELOPE, ENVELOPE_BY_NAME, NULL
from schemas.validation import WIRE_SUFFIX, all_rules, envelope_schema, value_dtype
from tests.strategies import lines
from transforms.core.records import ImportContext, LineBatch, RecordBatch
from transforms.stages.parse import parse_lines
from transforms.stages.validate import failures_by_row, pandera_failures_by_row, validate_batch
from transforms.stages.wire import wire_frame

CTX = ImportContext("run-rules", 1_764_000_000_000_000)
KEY = "61a095fdd8d2e20011544831"


def good(i: int = 0, **overrides) -> dict:
    env = {"key": KEY, "tmpId": f"tmp{i:06d}", "eventId": f"evt{i:06d}", "name": "page_view",
           "url": "https://shop.example.com/p/1", "ua": "Mozilla/5.0", "data": {}, "clientId": None, "v": 1,
           "timestamp": 1_763_000_000_000 + i}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not ...}


def flat_fields(records: list[dict]) -> list:
    """The parse stage's ``fields``: each record's envelope values in ENVELOPE order, one flat list."""
    return [r.get(f.name) for r in records for f in ENVELOPE]


def reasons(record: dict) -> list[dict]:
    batch = RecordBatch("f")
    batch.append(record, b"{}", 1, None)
    _, dead = validate_batch(batch, CTX)
    return dead[0]["reasons"] if dead else []


# --- what each rule says -------------------------------------------------------------------------------

BROKEN = [
    (good(key=...), "key:missing", "`key` is required."),
    (good(key=5), "key:type", "`key` must be string."),
    (good(key="nothex"), "key:pattern", "`key` must match ^[0-9a-f]{24}$."),
    (good(tmpId=""), "tmpId:empty", "`tmpId` must not be empty."),
    (good(tmpId="  "), "tmpId:blank", "`tmpId` must not be only whitespace."),
    (good(eventId="\t"), "eventId:blank", "`eventId` must not be only whitespace."),
    (good(name="n" * 129), "name:too_long", "`name` must be at most 128 characters."),
    (good(clientId=7), "clientId:type", "`clientId` must be string, null."),
    (good(data="x"), "data:type", "`data` must be object, null."),
    (good(v=2), "v:unsupported", "`v` must be 1."),
    (good(v="1"), "v:type", "`v` must be number."),
    (good(timestamp="x"), "timestamp:type", "`timestamp` must be number, null."),
]


@pytest.mark.parametrize(("record", "code", "message"), BROKEN, ids=[c for _, c, _ in BROKEN])
def test_each_reason_names_its_field_and_says_what_is_expected(record: dict, code: str, message: str) -> None:
    [reason] = reasons(record)
    assert (reason["code"], reason["field"], reason["message"]) == (code, code.split(":")[0], message)


def test_every_rule_message_names_its_field_first() -> None:
    for rule in all_rules():
        assert rule.message.startswith(f"`{rule.field}` "), rule
        assert rule.message.endswith("."), rule


def test_messages_state_the_declared_limits() -> None:
    by_code = {r.code: r.message for r in all_rules()}
    for f in ENVELOPE:
        assert all(t in by_code[f"{f.name}:type"] for t in f.accepted), f.name
        if f.max_length:
            assert f"at most {f.max_length} characters" in by_code[f"{f.name}:too_long"]
        if f.pattern:
            assert f.pattern in by_code[f"{f.name}:pattern"]


def test_whitespace_is_no_id_but_an_id_with_spaces_is_one() -> None:
    assert [r["code"] for r in reasons(good(eventId=" \n "))] == ["eventId:blank"]
    # an empty id breaks the `empty` rule alone, not `blank` too
    assert sorted(r["code"] for r in reasons(good(tmpId="", eventId=""))) == ["eventId:empty", "tmpId:empty"]
    assert reasons(good(eventId=" a b ")) == []
    assert reasons(good(name="  ")) == []  # only ids must not be blank


@pytest.mark.parametrize("field", [f for f in ENVELOPE if f.max_length], ids=lambda f: f.name)
def test_a_value_of_exactly_the_longest_length_passes(field) -> None:
    value = "a" * field.max_length
    if field.pattern:
        pytest.skip("a pattern decides its length")
    assert reasons(good(**{field.name: value})) == []


def test_value_dtypes() -> None:
    assert value_dtype(ENVELOPE_BY_NAME["key"]) is pl.Utf8
    assert value_dtype(ENVELOPE_BY_NAME["v"]) is pl.Float64
    assert value_dtype(ENVELOPE_BY_NAME["timestamp"]) is pl.Float64
    assert value_dtype(ENVELOPE_BY_NAME["data"]) is None  # only its wire type is checked


def test_the_schema_is_strict_and_only_values_may_be_null() -> None:
    schema, rules = envelope_schema()
    assert schema.strict is True
    for name, column in schema.columns.items():
        assert column.nullable is (not name.endswith(WIRE_SUFFIX)), name
    assert set(rules.values()) == set(all_rules())
    assert envelope_schema() is envelope_schema()  # built once


# --- the wire frame ------------------------------------------------------------------------------------


def test_wire_types_tell_absent_null_and_wrong_types_apart() -> None:
    records = [good(0), good(1, key=None, ua=..., v=True, data=[1], clientId=..., timestamp=None),
               good(2, key=..., ua=None, v=1.5, data={"a": 1}, clientId="c", timestamp=...)]
    frame = wire_frame(records)
    wire = {f.name: frame[f.name + WIRE_SUFFIX].to_list() for f in ENVELOPE}
    assert wire["key"] == ["string", "null", "absent"]  # required: absent and null break different rules
    assert wire["v"] == ["number", "boolean", "number"]
    assert wire["data"] == ["object", "array", "object"]
    # optional fields that may be null: no rule tells absent from null, both are tagged null
    assert wire["ua"] == ["string", "null", "null"]
    assert wire["clientId"] == ["null", "null", "string"]
    assert wire["timestamp"] == ["number", "null", "null"]
    assert frame["key"].to_list() == [KEY, None, None]
    assert frame["v"].to_list() == [1.0, None, 1.5]
    assert frame["ua"].to_list() == ["Mozilla/5.0", None, None]


def test_optional_fields_that_may_not_be_null_tell_absent_from_null() -> None:
    optional_not_null = [f for f in ENVELOPE if not f.required and NULL not in f.accepted]
    for f in optional_not_null:
        frame = wire_frame([good(0), good(1, **{f.name: None}), good(2, **{f.name: ...})])
        assert frame[f.name + WIRE_SUFFIX].to_list()[1:] == ["null", "absent"], f.name


def test_values_of_a_wrong_type_are_null_in_the_value_column() -> None:
    records = [good(0, tmpId=5, v="1"), good(1, tmpId=["x"], v=None), good(2, tmpId="t", v=3),
               good(3, tmpId={"a": "b"}, v=[1])]
    frame = wire_frame(records)
    assert frame["tmpId"].to_list() == [None, None, "t", None]
    assert frame["tmpId" + WIRE_SUFFIX].to_list() == ["number", "array", "string", "object"]
    assert frame["v"].to_list() == [None, None, 3.0, None]
    assert frame["v" + WIRE_SUFFIX].to_list() == ["string", "null", "number", "array"]


def test_an_integer_beyond_float_range_is_infinite_not_null() -> None:
    frame = wire_frame([good(0, timestamp=10**400), good(1, timestamp=-(10**400)), good(2)])
    assert frame["timestamp"].to_list() == [math.inf, -math.inf, 1_763_000_000_002.0]
    assert frame["timestamp" + WIRE_SUFFIX].to_list() == ["number"] * 3


def test_an_unsupported_python_value_has_its_own_wire_type() -> None:
    # only JSON values have a wire type; anything else a reader could hand over is refused as a type
    frame = wire_frame([good(0, key=b"bytes"), good(1)])
    assert frame["key" + WIRE_SUFFIX].to_list() == ["unsupported", "string"]
    assert [r["code"] for r in reasons(good(0, key=b"bytes"))] == ["key:type"]


def test_the_parse_stages_fields_give_the_same_frame_as_the_records() -> None:
    records = [good(0), good(1, key=None, ua=..., v=True, timestamp=10**400), good(2, key=..., v="1", tmpId=3),
               good(3, clientId="c", data=[1])]
    assert wire_frame(records, flat_fields(records)).equals(wire_frame(records))


def test_fields_of_another_length_are_not_used() -> None:
    records = [good(0), good(1, key=5)]
    assert wire_frame(records, flat_fields(records)[:-1]).equals(wire_frame(records))


def test_a_frame_of_one_record_and_of_none() -> None:
    one = wire_frame([good(0)])
    assert one.height == 1 and one["key" + WIRE_SUFFIX].to_list() == ["string"]
    none = wire_frame([])
    assert none.height == 0
    assert set(none.columns) == set(envelope_schema()[0].columns)
    assert failures_by_row(none) == {}


def test_a_column_of_one_wire_type_throughout() -> None:
    frame = wire_frame([good(i, ua=...) for i in range(5)])
    assert frame["ua" + WIRE_SUFFIX].to_list() == ["null"] * 5
    assert frame["key" + WIRE_SUFFIX].to_list() == ["string"] * 5
    assert frame.height == 5


def test_failing_rows_by_position_with_every_rule_they_break() -> None:
    frame = wire_frame([good(0), good(1, key="x", v=2), good(2), good(3, name=...)])
    failing = failures_by_row(frame)
    assert sorted(failing) == [1, 3]
    assert sorted(r.code for r in failing[1]) == ["key:pattern", "v:unsupported"]
    assert [r.code for r in failing[3]] == ["name:missing"]


def test_a_frame_that_is_not_a_wire_frame_is_a_bug_not_bad_input() -> None:
    frame = wire_frame([good(0), good(1)])
    with pytest.raises(RuntimeError, match="unexpected validation failure"):
        failures_by_row(frame.drop("key" + WIRE_SUFFIX))
    with pytest.raises(RuntimeError, match="unexpected validation failure"):
        failures_by_row(frame.with_columns(pl.lit(1).alias("v")))


def test_the_kept_batch_carries_its_frame_without_the_failing_rows() -> None:
    batch = RecordBatch("f", fields=None)
    records = [good(0), good(1, v=2), good(2)]
    for i, r in enumerate(records):
        batch.append(r, b"{}", i + 1, None)
    batch.fields = flat_fields(records)
    kept, dead = validate_batch(batch, CTX)
    assert kept.fields is None
    assert kept.frame["eventId"].to_list() == ["evt000000", "evt000002"]
    assert [d["source_line"] for d in dead] == [2]


def test_an_all_good_batch_keeps_the_whole_frame() -> None:
    batch = RecordBatch("f")
    for i in range(3):
        batch.append(good(i), b"{}", i + 1, None)
    batch.fields = flat_fields(batch.records)
    kept, dead = validate_batch(batch, CTX)
    assert dead == [] and kept is batch
    assert kept.fields is None  # the frame holds the values now
    assert kept.frame["eventId"].to_list() == ["evt000000", "evt000001", "evt000002"]


def test_a_batch_where_one_integer_overflows_keeps_its_other_numbers() -> None:
    frame = wire_frame([good(0, timestamp=10**400), good(1, timestamp=1.5), good(2, timestamp="x"), good(3, v=True)])
    assert frame["timestamp"].to_list() == [math.inf, 1.5, None, 1_763_000_000_003.0]


def test_a_null_wire_type_is_a_bug_not_bad_input() -> None:
    frame = wire_frame([good(0), good(1)])
    with pytest.raises(RuntimeError, match="unexpected validation failure"):
        failures_by_row(frame.with_columns(pl.Series("key" + WIRE_SUFFIX, ["string", None], pl.Utf8)))


def test_a_record_too_large_for_a_row_is_a_dead_letter_with_every_reason() -> None:
    from transforms.core.bigquery_values import ROW_OVERHEAD_BYTES

    limit = ROW_OVERHEAD_BYTES + 100
    batch = RecordBatch("f")
    for i, (record, size) in enumerate([(good(0), 10), (good(1), 101), (good(2, v=2), 101), (good(3), 100)]):
        batch.append(record, b"x" * size, i + 1, None)
    kept, dead = validate_batch(batch, CTX, limit)
    assert kept.line_numbers == [1, 4]
    assert [(d["source_line"], [r["code"] for r in d["reasons"]]) for d in dead] == [
        (2, ["row:too_large"]), (3, ["v:unsupported", "row:too_large"])]
    # the default limit is BigQuery's 100 MB: only the broken record is left out
    assert [d["source_line"] for d in validate_batch(batch, CTX)[1]] == [3]


# --- one query, as pandera ----------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(lines(), min_size=1, max_size=150))
def test_the_checks_in_one_query_find_what_pandera_finds(batch_lines):
    """The same failing rows, each with the same rules in the same order, as pandera's own ``validate``
    (tests/test_fuzz.py's lines: valid envelopes with fields dropped, retyped, emptied or added). Batches of
    up to 150 lines: pandera's ``validate`` costs 36 ms a batch whatever its size."""
    records, _ = parse_lines(LineBatch("f", batch_lines, list(range(1, len(batch_lines) + 1))), CTX)
    frame = wire_frame(records.records, records.fields)
    assert failures_by_row(frame) == dict(pandera_failures_by_row(frame))


def test_the_checks_in_one_query_on_every_rule_broken_at_once() -> None:
    records = [good(0), good(1, key="x", v=2, eventId="  ", tmpId="", url=5, timestamp="t"), good(2, name=...),
               good(3, eventId="a\x00b", ua=7, clientId=[], data=3, b=True), good(4)]
    frame = wire_frame(records)
    failing = failures_by_row(frame)
    assert sorted(failing) == [1, 2, 3]
    assert failing == dict(pandera_failures_by_row(frame))


def test_a_check_that_fails_nulls_is_refused(monkeypatch) -> None:
    """The one query lets a null pass every check, as pandera does by default (``ignore_na``); a model
    whose check said otherwise would be validated wrongly, so it is refused."""
    import pandera.polars as pa

    from transforms.stages import validate

    schema, rules = envelope_schema()
    column = "key" + WIRE_SUFFIX
    checks = [pa.Check.ne("absent", ignore_na=False), *schema.columns[column].checks[1:]]
    strict = schema.update_column(column, checks=checks)
    monkeypatch.setattr(validate, "envelope_schema", lambda: (strict, rules))
    validate.check_plan.cache_clear()
    try:
        with pytest.raises(ValueError, match=f"check 0 of {column} fails nulls"):
            validate.check_plan()
    finally:
        monkeypatch.undo()
        validate.check_plan.cache_clear()
    assert validate.check_plan()[2][0][0] == column
