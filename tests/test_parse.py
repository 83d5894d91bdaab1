"""Parse stage: lines into envelopes (objects, arrays of objects), and the dead letters of what is not."""

from __future__ import annotations

import base64

import orjson
import pytest

from schemas.envelope import PARSE_REASONS, READ_REASONS
from tests.factory import codes, good
from transforms.core.records import PROCESSOR, ImportContext, LineBatch, RecordBatch
from transforms.stages.parse import check_objects, parse_lines

CTX = ImportContext("run-parse", 1_764_000_000_000_000)
URI = "gs://bucket/export/part-0001.ndjson"


def lines_batch(*lines: bytes, first: int = 1) -> LineBatch:
    return LineBatch(URI, list(lines), list(range(first, first + len(lines))))


# --- parse -------------------------------------------------------------------------------------


def test_parse_one_object_per_line() -> None:
    a, b = good(1), good(2)
    records, dead = parse_lines(lines_batch(orjson.dumps(a), orjson.dumps(b), first=10), CTX)
    assert dead == []
    assert records.source_uri == URI
    assert records.records == [a, b]
    assert records.raws == [orjson.dumps(a), orjson.dumps(b)]
    assert records.line_numbers == [10, 11]
    assert records.indexes == [None, None]


def test_parse_array_of_objects_gives_an_index_per_element() -> None:
    envs = [good(1), good(2), good(3)]
    records, dead = parse_lines(lines_batch(orjson.dumps(envs), first=5), CTX)
    assert dead == []
    assert records.records == envs
    assert records.line_numbers == [5, 5, 5]
    assert records.indexes == [0, 1, 2]
    assert records.raws == [orjson.dumps(e) for e in envs]


def test_parse_array_mixing_objects_and_other_values() -> None:
    line = orjson.dumps([good(1), 5, "x", None, [good(9)], good(2)])
    records, dead = parse_lines(lines_batch(line, first=3), CTX)
    assert records.records == [good(1), good(2)]
    assert records.indexes == [0, 5]
    assert records.line_numbers == [3, 3]
    assert [(d["source_line"], d["source_index"], codes(d), d["raw_payload"]) for d in dead] == [
        (3, 1, ["parse:not_an_object"], "5"),
        (3, 2, ["parse:not_an_object"], '"x"'),
        (3, 3, ["parse:not_an_object"], "null"),
        (3, 4, ["parse:not_an_object"], orjson.dumps([good(9)]).decode()),
    ]
    assert [d["reasons"][0]["message"].endswith(suffix) for d, suffix in
            zip(dead, ["Got a number.", "Got a string.", "Got null.", "Got an array."], strict=True)] == [True] * 4


def test_parse_empty_array() -> None:
    records, dead = parse_lines(lines_batch(b"[]", first=7), CTX)
    assert len(records) == 0
    assert len(dead) == 1
    assert codes(dead[0]) == ["parse:empty_array"]
    assert dead[0]["raw_payload"] == "[]"
    assert (dead[0]["source_line"], dead[0]["source_index"]) == (7, None)


@pytest.mark.parametrize("line", [b"{broken", b'{"key": "x",}', b"{}{}", b"nul", b'{"a": 1'])
def test_parse_invalid_json(line: bytes) -> None:
    records, dead = parse_lines(lines_batch(line, first=2), CTX)
    assert len(records) == 0
    [d] = dead
    assert codes(d) == ["parse:invalid_json"]
    assert d["reasons"][0]["message"].startswith(PARSE_REASONS["parse:invalid_json"])
    assert d["stage"] == "parse"
    assert d["raw_payload"] == line.decode()
    assert d["raw_payload_base64"] is None
    assert d["raw_bytes"] == len(line)
    assert (d["source_uri"], d["source_line"], d["source_index"]) == (URI, 2, None)


@pytest.mark.parametrize(
    "line",
    [
        b'{"key": "\xff\xfe", "v": 1}',
        b'{"url": "https://ex.com/\xc3"}',
        b"\xef\xbb\xbf{\"a\": \"\xe9t\xe9\"}",  # Latin-1 after a BOM
        b"\x80",
    ],
)
def test_parse_invalid_utf8_keeps_the_exact_bytes(line: bytes) -> None:
    records, dead = parse_lines(lines_batch(line, first=4), CTX)
    assert len(records) == 0
    [d] = dead
    assert codes(d) == ["read:invalid_utf8"]
    assert d["reasons"][0]["message"].startswith(READ_REASONS["read:invalid_utf8"])
    assert base64.b64decode(d["raw_payload_base64"]) == line
    assert d["raw_payload"] == line.decode("utf-8", errors="replace")
    assert d["raw_bytes"] == len(line)
    assert d["source_line"] == 4


def test_parse_bom_prefixed_line() -> None:
    line = b"\xef\xbb\xbf" + orjson.dumps(good(1))
    records, dead = parse_lines(lines_batch(line), CTX)
    assert dead == []
    assert records.records == [good(1)]
    assert records.raws == [line]


def test_parse_bom_prefixed_broken_line_keeps_the_bom_in_its_dead_letter() -> None:
    line = b"\xef\xbb\xbf{broken"
    _, [d] = parse_lines(lines_batch(line), CTX)
    assert codes(d) == ["parse:invalid_json"]
    assert d["raw_payload"] == line.decode()
    assert d["raw_bytes"] == len(line)


@pytest.mark.parametrize(
    ("line", "got"),
    [(b'"just a string"', "a string"), (b"42", "a number"), (b"1.5", "a number"), (b"true", "a boolean"),
     (b"null", "null")],
)
def test_parse_json_that_is_not_an_object(line: bytes, got: str) -> None:
    records, [d] = parse_lines(lines_batch(line), CTX)
    assert len(records) == 0
    assert codes(d) == ["parse:not_an_object"]
    assert d["reasons"][0]["message"] == f"{PARSE_REASONS['parse:not_an_object']} Got {got}."
    assert d["raw_payload"] == line.decode()
    assert d["source_index"] is None


def test_parse_dead_letter_shape() -> None:
    _, [d] = parse_lines(lines_batch(b"{x", first=9), CTX)
    assert d == {
        "run_id": "run-parse",
        "processor": PROCESSOR,
        "stage": "parse",
        "reasons": [{"code": "parse:invalid_json", "field": None, "message": d["reasons"][0]["message"],
                     "value": None}],
        "raw_payload": "{x",
        "raw_payload_base64": None,
        "raw_bytes": 2,
        "source_uri": URI,
        "source_line": 9,
        "source_index": None,
        "source_message_id": None,
        "source_attributes": None,
        "rejected_at": CTX.started_micros,
        "raw_payload_uri": None,
        "datasource_id": None,
    }
    from schemas.arrow import DEAD_LETTER_SCHEMA

    assert list(d) == DEAD_LETTER_SCHEMA.names, "a dead letter has exactly the declared columns, in order"


def test_parse_keeps_order_and_origin_across_good_and_bad_lines() -> None:
    batch = lines_batch(orjson.dumps(good(1)), b"oops", orjson.dumps([good(2), good(3)]), b"7",
                        orjson.dumps(good(4)), first=100)
    records, dead = parse_lines(batch, CTX)
    assert [r["eventId"] for r in records.records] == [good(i)["eventId"] for i in (1, 2, 3, 4)]
    origin = list(zip(records.line_numbers, records.indexes, strict=True))
    assert origin == [(100, None), (102, 0), (102, 1), (104, None)]
    assert [(d["source_line"], codes(d)) for d in dead] == [(101, ["parse:invalid_json"]),
                                                           (103, ["parse:not_an_object"])]


def test_check_objects_keeps_dicts_and_dead_letters_the_rest() -> None:
    batch = RecordBatch(URI)
    batch.append(good(1), orjson.dumps(good(1)), None, 0)
    batch.append(3, b"3", None, 1)
    batch.append(good(2), orjson.dumps(good(2)), None, 2)
    kept, [d] = check_objects(batch, CTX)
    assert kept.records == [good(1), good(2)]
    assert kept.indexes == [0, 2]
    assert codes(d) == ["parse:not_an_object"]
    assert (d["source_index"], d["raw_payload"]) == (1, "3")
