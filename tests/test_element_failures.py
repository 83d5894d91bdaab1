"""Failures confined to their smallest unit (issue 15): an array element, a CSV row, a Parquet value;
typed Parquet columns of any physical type; blank ids and empty optional strings."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.factory import envelope, line
from transforms.core.records import ImportContext, LineBatch, RecordBatch
from transforms.core.settings import ReadLimits, TimestampPolicy
from transforms.sources.files import ReadTask
from transforms.sources.read import read_task
from transforms.sources.read_types import Count, FileError
from transforms.stages.normalize import normalize_batch
from transforms.stages.parse import check_objects, parse_lines, split_json_array
from transforms.stages.validate import validate_batch

CTX = ImportContext(run_id="t", started_micros=1_763_000_000_000_000)
POLICY = TimestampPolicy(max_micros=2**62)
KEY = "61a095fdd8d2e20011544831"


def read_all(path, fmt: str, compression: str = "none", limits: ReadLimits = ReadLimits()):
    task = ReadTask(str(path), fmt, compression, path.stat().st_size)
    batches, dead, errors, read = [], [], [], 0
    for item in read_task(task, CTX, limits):
        if isinstance(item, FileError):
            errors.append(item)
        elif isinstance(item, Count):
            read += item.n if item.metric == "read" else 0
        elif isinstance(item, dict):
            dead.append(item)
        else:
            batches.append(item)
    return batches, dead, errors, read


def through_stages(batches) -> tuple[list[str], list[dict]]:
    """eventIds loaded and dead letters of the batches a reader yielded, through parse, validate, normalize."""
    loaded, dead = [], []
    for batch in batches:
        records, d1 = parse_lines(batch, CTX) if isinstance(batch, LineBatch) else check_objects(batch, CTX)
        valid, d2 = validate_batch(records, CTX)
        rows, d3, _ = normalize_batch(valid, CTX, POLICY)
        loaded += rows.column("eventId").to_pylist()
        dead += d1 + d2 + d3
    return loaded, dead


# --- JSON arrays: one broken element is one dead letter ------------------------------------------------------
def test_split_json_array_keeps_strings_whole_and_refuses_what_is_not_one_array():
    assert split_json_array(b' [1, {"a": "x,]}"}, NaN ,"q\\"]" ] ') == [b"1", b'{"a": "x,]}"}', b"NaN", b'"q\\"]"']
    assert split_json_array(b"[1, [2, 3], {\"b\": [4]}") == [b"1", b"[2, 3]", b'{"b": [4]}']  # cut before `]`
    assert split_json_array(b"[1,,2,]") == [b"1", b"2"]
    assert split_json_array(b"[1]\n[2]") is None  # NDJSON of arrays
    assert split_json_array(b'{"a": 1}') is None
    assert split_json_array(b"[") == []


def test_a_json_file_with_one_nan_loads_every_other_element(tmp_path):
    events = [orjson.dumps(envelope(i)) for i in range(1, 5001)]
    events[1234] = events[1234].replace(b'"v":1', b'"v":NaN')
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b",".join(events) + b"]")
    batches, dead, errors, _ = read_all(path, "json")
    loaded, more = through_stages(batches)
    dead += more
    assert not errors
    assert len(loaded) == 4999 and len(dead) == 1
    assert dead[0]["source_index"] == 1234 and dead[0]["reasons"][0]["code"] == "parse:invalid_json"
    assert dead[0]["raw_payload"].encode() == events[1234]  # the element alone: replayable


def test_a_truncated_json_gz_keeps_the_elements_before_the_break(tmp_path):
    body = orjson.dumps([envelope(i) for i in range(1, 301)], option=orjson.OPT_INDENT_2)
    data = gzip.compress(body, mtime=0)
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    batches, dead, errors, read = read_all(path, "json", "gzip")
    loaded, more = through_stages(batches)
    assert errors, "the break is reported"
    assert len(loaded) > 50
    assert len(dead) + len(more) == 1  # the element cut by the break


def test_an_ndjson_line_holding_an_array_with_a_broken_element():
    raw = b"[" + line(envelope(1)) + b",NaN," + line(envelope(2)) + b",\xff]"
    records, dead = parse_lines(LineBatch("f.ndjson", [raw], [7]), CTX)
    assert [r["eventId"] for r in records.records] == [envelope(1)["eventId"], envelope(2)["eventId"]]
    assert records.indexes == [0, 2] and records.line_numbers == [7, 7]
    assert sorted((d["source_index"], d["reasons"][0]["code"]) for d in dead) == [
        (1, "parse:invalid_json"), (3, "read:invalid_utf8")]


# --- CSV: a long cell or a refused row is one dead letter, the file reads on ---------------------------------
def test_a_csv_cell_over_the_csv_modules_limit_does_not_stop_the_file(tmp_path):
    header = "key,tmpId,eventId,name,url,v,timestamp,ua,data"
    def row(i, ua="M", data=""):
        return f"{KEY},t{i},c-{i},page_view,https://x.example/{i},1,1763000000000,{ua},{data}"
    rows = [row(1), row(2, data='"{""x"":""' + "A" * 200_000 + '""}"'), row(3, '"' + "B" * 300_000 + '"'), row(4),
            row(5, '"multi\nline"'), row(6)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    batches, dead, errors, _ = read_all(path, "csv", limits=ReadLimits(max_line_bytes=250_000))
    loaded, more = through_stages(batches)
    assert not errors
    assert loaded == ["c-1", "c-2", "c-4", "c-5", "c-6"]
    assert [(d["source_line"], d["reasons"][0]["code"], d["raw_bytes"]) for d in dead + more] == [
        (4, "read:line_too_long", len(rows[2]) + 1)]
    lines = {r: n for b in batches for r, n in zip((x["eventId"] for x in b.records), b.line_numbers)}
    assert lines["c-5"] == 6 and lines["c-6"] == 8  # a row's first line, not its last


# --- Parquet: any physical type maps to the wire type or makes the row a dead letter -------------------------
def _parquet(path, table: pa.Table):
    pq.write_table(table, path)
    return path


def _good_columns(n: int) -> dict:
    return {"key": [KEY] * n, "tmpId": [f"t{i}" for i in range(n)], "eventId": [f"p-{i}" for i in range(n)],
            "name": ["page_view"] * n, "url": ["https://x.example/"] * n, "v": [1] * n}


def test_parquet_list_data_and_nanosecond_timestamps(tmp_path):
    columns = _good_columns(3)
    columns["data"] = pa.array([[1, 2], None, []], pa.list_(pa.int64()))
    columns["timestamp"] = pa.array([1_763_000_000_123_456_789] * 3, pa.int64()).cast(pa.timestamp("ns"))
    batches, dead, errors, _ = read_all(_parquet(tmp_path / "t.parquet", pa.table(columns)), "parquet")
    loaded, more = through_stages(batches)
    assert not errors
    assert loaded == ["p-1"]
    assert sorted(d["reasons"][0]["code"] for d in more) == ["data:type", "data:type"]
    assert batches[0].records[1]["timestamp"] == 1_763_000_000_123_456  # floored to µs, exact


_INT64 = st.integers(-(2**63), 2**63 - 1)
_TYPED = [
    (pa.int8(), st.integers(-128, 127)), (pa.uint64(), st.integers(0, 2**64 - 1)), (pa.int64(), _INT64),
    (pa.float16(), st.floats(width=16)), (pa.float32(), st.floats(width=32)), (pa.float64(), st.floats()),
    (pa.bool_(), st.booleans()), (pa.string(), st.text()), (pa.large_string(), st.text()),
    (pa.binary(), st.binary()), (pa.binary(3), st.binary(min_size=3, max_size=3)),
    (pa.decimal128(10, 2), st.decimals(-10**7, 10**7, places=2, allow_nan=False)),
    (pa.decimal256(50, 0), st.decimals(-10**40, 10**40, places=0, allow_nan=False)),
    (pa.date32(), st.dates()), (pa.time64("us"), st.times()),
    (pa.list_(pa.int64()), st.lists(_INT64, max_size=3)), (pa.list_(pa.string()), st.lists(st.text(), max_size=3)),
    (pa.struct([("a", pa.int64()), ("b", pa.string())]), st.fixed_dictionaries({"a": _INT64, "b": st.text()})),
    (pa.map_(pa.string(), pa.int64()), st.lists(st.tuples(st.text(), _INT64), max_size=3)),
    (pa.map_(pa.int32(), pa.timestamp("ms")), st.lists(st.tuples(st.integers(-9, 9), st.datetimes()), max_size=2)),
    (pa.struct([("t", pa.timestamp("s"))]), st.fixed_dictionaries({"t": st.datetimes()})),
]
_CAST_FROM_INT64 = [pa.timestamp("s"), pa.timestamp("ms", tz="UTC"), pa.timestamp("us"), pa.timestamp("ns"),
                    pa.duration("ms"), pa.date64()]


@st.composite
def typed_column(draw, n: int, good: list) -> pa.Array:
    choice = draw(st.integers(0, len(_TYPED) + len(_CAST_FROM_INT64) + 2))
    if choice == 0:  # the right values
        return pa.array(good)
    if choice == 1:
        return pa.nulls(n)
    if choice == 2:
        return pa.array(draw(st.lists(st.text(), min_size=n, max_size=n))).dictionary_encode()
    choice -= 3
    if choice < len(_TYPED):
        kind, values = _TYPED[choice]
        items = draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))
        if kind == pa.float16():
            return pa.array(np.array([np.nan if v is None else v for v in items], np.float16))
        return pa.array(items, kind)
    kind = _CAST_FROM_INT64[choice - len(_TYPED)]
    ints = draw(st.lists(st.one_of(st.none(), _INT64), min_size=n, max_size=n))
    return pa.array(ints, pa.int64()).cast(kind)


@st.composite
def typed_tables(draw) -> pa.Table:
    n = draw(st.integers(1, 4))
    good = {**_good_columns(n), "timestamp": [1_763_000_000_000] * n, "data": ['{"a":1}'] * n,
            "clientId": [None] * n, "ua": ["M"] * n, "b": ["b"] * n, "id": ["i"] * n}
    names = draw(st.lists(st.sampled_from(sorted(good)), unique=True, min_size=1, max_size=5))
    return pa.table({name: (draw(typed_column(n, good[name])) if name in names else pa.array(good[name]))
                     for name in good})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(typed_tables())
def test_parquet_of_any_column_types_is_read_row_by_row(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("pq") / "t.parquet"
    try:
        _parquet(path, table)
    except pa.ArrowInvalid:  # a value Parquet itself cannot store (seconds past the ms range): no such file
        assume(False)
    batches, dead, errors, _ = read_all(path, "parquet")
    assert not errors and not dead
    assert sum(map(len, batches)) == table.num_rows
    loaded, dead = through_stages(batches)
    assert len(loaded) + len(dead) == table.num_rows, "every row loaded or a dead letter"
    for d in dead:
        assert d["reasons"] and all(r["code"] for r in d["reasons"])
        # the row as JSON: replayable (a NaN or ±Infinity float as JavaScript writes it, which orjson refuses)
        json.loads(d["raw_payload"])


# --- blank ids, empty optional strings -----------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "codes"), [
    ("eventId", " ", ["eventId:blank"]), ("eventId", "\t\u00a0\u3000", ["eventId:blank"]),
    ("tmpId", "  ", ["tmpId:blank"]), ("eventId", "", ["eventId:empty"]), ("eventId", " x ", []),
])
def test_a_whitespace_only_id_is_a_dead_letter(field, value, codes):
    batch = RecordBatch("f", [envelope(1, **{field: value})], [b"{}"], [1], [None])
    _, dead = validate_batch(batch, CTX)
    assert [r["code"] for d in dead for r in d["reasons"]] == codes


def test_empty_optional_strings_are_stored_as_null():
    records = [envelope(1, clientId="", ua="", b="", id="", data={"transId": ""}),
               envelope(2, clientId=" ", ua="M", b="b", id="i", data={"transId": "T"})]
    batch = RecordBatch("f", records, [b"{}"] * 2, [1, 2], [None] * 2)
    valid, _ = validate_batch(batch, CTX)
    rows, _, _ = normalize_batch(valid, CTX, POLICY)
    got = rows.select(["clientId", "ua", "b", "id", "transId"]).to_pylist()
    assert got == [{"clientId": None, "ua": None, "b": None, "id": None, "transId": None},
                   {"clientId": " ", "ua": "M", "b": "b", "id": "i", "transId": "T"}]
    assert rows.column("agent").to_pylist()[0] is None


def test_parquet_decimals_and_dates_in_data_are_json(tmp_path):
    columns = _good_columns(1)
    columns["timestamp"] = pa.array([Decimal("1763000000000")], pa.decimal128(20, 0))
    columns["data"] = pa.array([{"value": Decimal("12.35"), "day": dt.date(2026, 1, 2), "raw": b"\xff"}],
                               pa.struct([("value", pa.decimal128(10, 2)), ("day", pa.date32()), ("raw", pa.binary())]))
    batches, _, errors, _ = read_all(_parquet(tmp_path / "d.parquet", pa.table(columns)), "parquet")
    valid, dead = validate_batch(batches[0], CTX)
    rows, _, _ = normalize_batch(valid, CTX, POLICY)
    assert not errors and not dead
    assert rows.column("value").to_pylist() == [Decimal("12.35")]
    assert rows.column("labels").to_pylist() == [[{"key": "day", "value": "2026-01-02"},
                                                  {"key": "raw", "value": "/w=="}]]


# --- payloads over the limit, stored whole while they are read (transforms/core/payloads.py) ------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       st.integers(1, 16), st.integers(1, 20))
def test_every_long_line_is_stored_whole_whatever_the_blocks(tmp_path_factory, lines, block, max_line):
    import io

    from transforms.core.payloads import PayloadSpill
    from transforms.sources import read_ndjson as read_module

    folder = tmp_path_factory.mktemp("spill")
    saved, read_module.BLOCK = read_module.BLOCK, block
    try:
        got = list(read_module.split_lines(io.BytesIO(b"\n".join(lines)), 0, None, max_line,
                                            lambda offset: PayloadSpill(str(folder / f"{offset}.payload"))))
    finally:
        read_module.BLOCK = saved
    want = [x for x in lines] if lines and (lines[-1] or len(lines) > 1) else []
    if lines and not lines[-1] and len(lines) > 1:
        want = want[:-1]  # nothing after the last newline: no line there
    assert [length for _, length, _ in got] == [len(x) - x.endswith(b"\r") for x in want]  # a CRLF's CR uncounted
    for (cut, length, stored), whole in zip(got, want):
        assert whole.startswith(cut) and len(cut) >= min(len(whole), max_line + 1) - 1  # at most a CR less
        if length > max_line:
            with open(stored, "rb") as f:
                assert f.read() == whole
        else:
            assert stored is None


def test_csv_rows_and_json_elements_over_the_limit_are_stored_whole(tmp_path):
    from transforms.core.payloads import exact_bytes

    header = "key,tmpId,eventId,name,url,v,timestamp,data"
    long_row = f'{KEY},t,e1,page_view,https://x/,1,1763000000000,"{{""a"":""{"y" * 500}""}}"'
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(f"{header}\n{long_row}\n")
    json_path = tmp_path / "a.json"
    json_path.write_bytes(b"[" + line(envelope(1)) + b',{"key":"' + b"z" * 500 + b'",NaN}]')
    limits = ReadLimits(batch_size=10, max_line_bytes=100, payload_dir=str(tmp_path / "payloads"))
    for path, fmt, whole in ((csv_path, "csv", long_row.encode() + b"\n"),
                             (json_path, "json", b'{"key":"' + b"z" * 500 + b'",NaN}')):
        task = ReadTask(str(path), fmt, "none", path.stat().st_size)
        [dead] = [x for x in read_task(task, CTX, limits) if isinstance(x, dict)]
        assert len(exact_bytes(dead)) == 100 and dead["raw_bytes"] == len(whole)
        with open(dead["raw_payload_uri"], "rb") as f:
            assert f.read() == whole, fmt


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
@pytest.mark.parametrize(("tail", "loaded"), [(b"", 2), (b",", 2), (b",\n  ", 2), (b',{"key":"', 2), (b",[", 2)])
def test_an_unterminated_array_keeps_its_complete_elements(tmp_path, fmt, tail, loaded):
    """`[{…},{…}` with no `]`: the complete elements are records; an element the cut went through is one
    dead letter that says the array was cut off."""
    body = b"[" + line(envelope(1)) + (b",\n" if fmt == "json" else b",") + line(envelope(2)) + tail.strip(b"\n ")
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(body + (b"\n" if fmt == "ndjson" else b""))  # an NDJSON line: no line break inside
    batches, read_dead, errors, _ = read_all(path, fmt)
    ids, dead = through_stages(batches)
    dead += read_dead
    assert len(ids) == loaded and not errors
    cut = tail.strip(b",\n ")
    assert len(dead) == (1 if cut else 0)
    if cut:
        assert dead[0]["reasons"][0]["code"] == "parse:invalid_json"
        assert "before its closing `]`: cut off" in dead[0]["reasons"][0]["message"]
        assert dead[0]["source_index"] == 2 and dead[0]["raw_payload"] == cut.decode()


def test_a_payload_larger_than_any_bigquery_row_is_not_stored(tmp_path):
    """A 300 KB gzip bomb is a 300 MB line: kept whole it would fill the disk for a record no table can
    take, so the spill gives up past its limit and removes what it wrote."""
    import io

    from transforms.core.payloads import PayloadSpill
    from transforms.sources import read_ndjson as read_module

    spilled = []

    def spill(offset):
        spilled.append(PayloadSpill(str(tmp_path / f"{offset}.payload"), max_bytes=50))
        return spilled[-1]

    got = list(read_module.split_lines(io.BytesIO(b"a" * 40 + b"\n" + b"b" * 80 + b"\nc"), 0, None, 10, spill))
    assert [(length, stored is not None) for _, length, stored in got] == [(40, True), (80, False), (1, False)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.payload"]


def test_two_payloads_of_one_origin_are_stored_apart(tmp_path):
    """A replay can reject two edited versions of one record (same file, line and index): named by their
    content, neither overwrites the other."""
    from transforms.core.payloads import bound_payloads

    base = {"run_id": "r", "source_uri": "f", "source_line": 3, "source_index": None, "source_message_id": None,
            "raw_payload_base64": None, "raw_bytes": 0}
    first, second = ({**base, "raw_payload": c * 3000} for c in "ab")
    stored = bound_payloads([first, second], str(tmp_path), limit=1000)
    assert len({d["raw_payload_uri"] for d in stored}) == 2
    for d, c in zip(stored, "ab"):
        with open(d["raw_payload_uri"], "rb") as f:
            assert f.read() == c.encode() * 3000
        assert len(d["raw_payload"]) == 1000 and d["raw_bytes"] == 3000


def test_a_crlf_line_of_exactly_the_limit_is_read_like_an_lf_one(tmp_path):
    body = orjson.dumps(envelope(1))
    for ending in (b"\n", b"\r\n"):
        path = tmp_path / "a.ndjson"
        path.write_bytes(body + ending + body.replace(b"evt", b"EVT") + ending)
        batches, dead, _, _ = read_all(path, "ndjson", limits=ReadLimits(max_line_bytes=len(body)))
        assert not dead and sum(len(b.lines) for b in batches) == 2, ending
