"""Property-based fuzzing of parse → validate → normalize, the pure stage functions, on generated lines.

Lines start as valid envelopes and are mutated: fields dropped, retyped or added, envelopes wrapped in
arrays with anything else, bytes cut, garbage inserted, a BOM or a CR added, or no JSON at all.
Whatever comes in, no exception escapes, and every record (an array element counts on its own) comes
out exactly once: as a row or as a dead letter, at its own (line, index).
"""

from __future__ import annotations

import base64
import pickle
from collections import Counter

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.arrow import ROW_SCHEMA
from tests.strategies import _dumps, json_values, lines, mutated_envelopes
from transforms.core.records import ImportContext, LineBatch, RecordBatch, compact_json
from transforms.core.settings import TimestampPolicy
from transforms.stages.normalize import normalize_batch
from transforms.stages.parse import parse_lines, split_json_array
from transforms.stages.validate import validate_batch

KEY = "61a095fdd8d2e20011544831"
BASE_MS = 1_763_000_000_000
CTX = ImportContext("fuzz-run", BASE_MS * 1000, "5f0c2a9e8b3d4c1a2b3c4d5e")
POLICY = TimestampPolicy(max_micros=(BASE_MS + 86_400_000 * 365) * 1000)
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def expected_records(line: bytes) -> list[tuple[int | None]]:
    """The indexes of the records a line holds: each element of a non-empty array (also of one that does
    not parse as a whole: each element is then a record of its own), else the line."""
    for candidate in (line, line[3:] if line.startswith(b"\xef\xbb\xbf") else None):
        if candidate is None:
            continue
        try:
            value = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, list) and value:
            return list(range(len(value)))
        return [None]
    elements = split_json_array(line)
    return list(range(len(elements))) if elements else [None]


def run_stages(batch_lines: list[bytes]):
    batch = LineBatch("fuzz.ndjson", batch_lines, list(range(1, len(batch_lines) + 1)))
    records, parse_dead = parse_lines(batch, CTX)
    valid, validate_dead = validate_batch(records, CTX)
    rows, normalize_dead, flags = normalize_batch(valid, CTX, POLICY)
    return records, rows, parse_dead + validate_dead + normalize_dead, flags


@FUZZ
@given(st.lists(lines(), min_size=1, max_size=8))
def test_every_generated_record_is_accounted_for_exactly_once(batch_lines):
    records, rows, dead, flags = run_stages(batch_lines)

    assert isinstance(rows, pa.Table) and rows.schema == ROW_SCHEMA
    want = Counter((n, index) for n, line in enumerate(batch_lines, start=1) for index in expected_records(line))
    got = Counter(zip(rows.column("source_line").to_pylist(), rows.column("source_index").to_pylist()))
    got.update((d["source_line"], d["source_index"]) for d in dead)
    assert got == want, "records in = rows out + dead letters, each record once"
    assert len(records) + sum(d["stage"] == "parse" for d in dead) == sum(want.values())

    for d in dead:
        assert d["reasons"] and all(r["code"] and r["message"] for r in d["reasons"])
        raw = base64.b64decode(d["raw_payload_base64"]) if d["raw_payload_base64"] else d["raw_payload"].encode()
        if d["source_index"] is None:  # a whole line: its exact bytes are kept
            assert raw == batch_lines[d["source_line"] - 1]
        orjson.dumps(d, default=str)  # serializable as it will be written
    assert all(n > 0 for n in flags.values())
    event(f"rows out: {'some' if rows.num_rows else 'none'}")
    for stage in sorted({d["stage"] for d in dead}):
        event(f"dead letters from {stage}")
    assert rows.column("eventId").null_count == 0 and rows.column("timestamp").null_count == 0


@settings(FUZZ, max_examples=60)
@given(st.lists(mutated_envelopes(), min_size=1, max_size=6))
def test_arrays_count_each_element_like_lines_do(envs):
    """The same envelopes as one array line or as one line each: the same rows and the same reasons."""
    _, as_array, dead_array, _ = run_stages([_dumps(envs)])
    _, as_lines, dead_lines, _ = run_stages([_dumps(e) for e in envs])
    assert as_array.num_rows + len(dead_array) == len(envs) == as_lines.num_rows + len(dead_lines)
    assert as_array.column("eventId").to_pylist() == as_lines.column("eventId").to_pylist()
    assert sorted(sorted(r["code"] for r in d["reasons"]) for d in dead_array) == \
        sorted(sorted(r["code"] for r in d["reasons"]) for d in dead_lines)


@settings(max_examples=200, deadline=None, database=None)
@given(json_values, st.booleans(), st.integers(min_value=250, max_value=1100))
def test_compact_json_writes_what_orjson_writes_at_any_depth(value, sort_keys, depth):
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        shallow = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: written as its digits
        shallow = compact_json(value, sort_keys=sort_keys)
        assert orjson.loads(shallow) == value or isinstance(value, int)
    assert compact_json(value, sort_keys=sort_keys) == shallow
    deep = value
    for _ in range(depth):
        deep = [deep]
    assert compact_json(deep, sort_keys=sort_keys) == b"[" * depth + shallow + b"]" * depth


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(json_values, max_size=5), st.integers(min_value=1, max_value=1020))
def test_record_batches_survive_pickling_at_any_depth(values, depth):
    """Beam pickles batches between stages; a record as deep as the parser accepts must survive it."""
    batch = RecordBatch("u.ndjson")
    for i, value in enumerate(values):
        batch.append(value, b"raw", i + 1, None)
    deep = orjson.loads(b"[" * depth + b"]" * depth)
    batch.append({"data": {"d": deep}}, b"deep", len(values) + 1, None)
    copy = pickle.loads(pickle.dumps(batch))
    assert copy.raws == batch.raws and copy.line_numbers == batch.line_numbers
    assert compact_json(copy.records) == compact_json(batch.records)
