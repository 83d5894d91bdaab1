"""Read stage on real files: NDJSON (plain, compressed, truncated, split), JSON documents, CSV, Parquet;
finding inputs and telling their format."""

from __future__ import annotations

import base64
import bz2
import gzip
import os
import random
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.records import ImportContext, LineBatch, RecordBatch
from transforms.core.settings import ReadLimits
from transforms.sources.files import InputError, ReadTask, compression_of, expand_patterns, format_of, plan_reads
from transforms.sources.read import count_newlines, read_task
from transforms.sources.read_types import Count, FileError

CTX = ImportContext("run-read", 1_764_000_000_000_000)
COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
    ".deflate": zlib.compress,
}


@dataclass
class Outcome:
    """Everything read_task yielded, sorted by kind (order of yield kept within each kind)."""

    lines: list[tuple[int, bytes]] = field(default_factory=list)
    records: list[tuple[object, bytes, int | None, int | None]] = field(default_factory=list)
    dead: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    errors: list[FileError] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, item: object) -> None:
        if isinstance(item, LineBatch):
            assert len(item.lines) == len(item.line_numbers) > 0
            self.lines += list(zip(item.line_numbers, item.lines, strict=True))
            self.kinds.append("lines")
        elif isinstance(item, RecordBatch):
            assert len(item) > 0
            self.records += list(zip(item.records, item.raws, item.line_numbers, item.indexes, strict=True))
            self.kinds.append("records")
        elif isinstance(item, Count):
            self.counts[item.metric] += item.n
            self.kinds.append("count")
        elif isinstance(item, FileError):
            self.errors.append(item)
            self.kinds.append("error")
        else:
            assert isinstance(item, dict), item
            self.dead.append(item)
            self.kinds.append("dead")


def tasks_for(path: Path, split_bytes: int = 0, input_format: str = "auto") -> list[ReadTask]:
    return plan_reads([(str(path), path.stat().st_size)], input_format, split_bytes)


def read_path(path: Path, limits: ReadLimits = ReadLimits(), split_bytes: int = 0, input_format: str = "auto"):
    """Read every task of a file, numbering the splits' first lines as ReadSourceFn does."""
    tasks = tasks_for(path, split_bytes, input_format)
    counts = {t.split_index: count_newlines(t) for t in tasks} if len(tasks) > 1 else {}
    out = Outcome()
    for task in tasks:
        first_line = 1 + sum(counts[k] for k in range(task.split_index))
        for item in read_task(task, CTX, limits, first_line):
            out.add(item)
    return out


def numbered(lines: list[bytes], first: int = 1) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=first))


def envelope_lines(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps({"eventId": f"e{i}", "url": "https://x.example/" + "p" * rng.randint(0, 120)})
            for i in range(n)]


# --- NDJSON ------------------------------------------------------------------------------------


def test_ndjson_crlf_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"a":1}\r\n{"b":2}\r\n{"c":"x\\r"}\r\n')
    out = read_path(path)
    assert out.lines == [(1, b'{"a":1}'), (2, b'{"b":2}'), (3, b'{"c":"x\\r"}')]
    assert out.dead == [] and out.errors == [] and out.counts == Counter()


def test_ndjson_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}')
    assert read_path(path).lines == [(1, b'{"a":1}'), (2, b'{"b":2}')]


def test_blank_lines_counted_and_numbering_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'\n{"a":1}\n\n   \n\r\n\t\n{"b":2}\n\n')
    out = read_path(path)
    assert out.lines == [(2, b'{"a":1}'), (7, b'{"b":2}')]
    assert out.counts == Counter({"blank_lines": 6})


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"")
    out = read_path(path)
    assert out.kinds == []


def test_over_long_line_dead_lettered_and_next_lines_numbered(tmp_path: Path) -> None:
    long_line = b'{"blob":"' + b"x" * 300 + b'"}'
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"a":1}\n' + long_line + b'\n{"b":2}\n\n{"c":3}\n')
    out = read_path(path, ReadLimits(max_line_bytes=100))
    assert out.lines == [(1, b'{"a":1}'), (3, b'{"b":2}'), (5, b'{"c":3}')]
    assert out.counts == Counter({"read": 1, "blank_lines": 1})
    [d] = out.dead
    assert [r["code"] for r in d["reasons"]] == ["read:line_too_long"]
    assert "311 > 100 bytes" in d["reasons"][0]["message"]
    assert d["stage"] == "read"
    assert d["raw_bytes"] == len(long_line) == 311
    assert d["raw_payload"] == long_line[:100].decode()
    assert base64.b64decode(d["raw_payload_base64"]) == long_line[:100]
    assert (d["source_uri"], d["source_line"], d["source_index"]) == (str(path), 2, None)


def test_line_exactly_at_the_limit_is_kept(tmp_path: Path) -> None:
    line = b'{"k":"' + b"y" * 92 + b'"}'
    assert len(line) == 100
    path = tmp_path / "a.ndjson"
    path.write_bytes(line + b"\n" + line + b"z\n")
    out = read_path(path, ReadLimits(max_line_bytes=100))
    assert out.lines == [(1, line)]
    assert [(d["source_line"], d["raw_bytes"]) for d in out.dead] == [(2, 101)]


def test_over_long_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"a":1}\n' + b"q" * 250)
    out = read_path(path, ReadLimits(max_line_bytes=64))
    assert out.lines == [(1, b'{"a":1}')]
    assert [(d["source_line"], d["raw_bytes"], len(d["raw_payload"])) for d in out.dead] == [(2, 250, 64)]


def test_batches_respect_batch_size(tmp_path: Path) -> None:
    lines = envelope_lines(25)
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    tasks = tasks_for(path)
    sizes = [len(b.lines) for b in read_task(tasks[0], CTX, ReadLimits(batch_size=10))]
    assert sizes == [10, 10, 5]


@pytest.mark.parametrize("ext", list(COMPRESSORS))
def test_compressed_copies_read_identically(tmp_path: Path, ext: str) -> None:
    lines = envelope_lines(300) + [b"", b'{"last":true}']
    data = b"\r\n".join(lines) + b"\n"
    plain = tmp_path / "plain.ndjson"
    plain.write_bytes(data)
    packed = tmp_path / f"packed.ndjson{ext}"
    packed.write_bytes(COMPRESSORS[ext](data))
    expected = read_path(plain)
    got = read_path(packed)
    assert got.lines == expected.lines
    assert len(got.lines) == 301
    assert got.counts == expected.counts == Counter({"blank_lines": 1})
    assert got.errors == []


@pytest.mark.parametrize(
    ("ext", "compress"),
    [(".gz", gzip.compress), (".zst", lambda d: zstandard.ZstdCompressor().compress(d)), (".deflate", zlib.compress)],
)
def test_concatenated_streams_read_whole(tmp_path: Path, ext: str, compress) -> None:
    first, second = envelope_lines(50, seed=1), envelope_lines(60, seed=2)
    path = tmp_path / f"multi.ndjson{ext}"
    path.write_bytes(compress(b"\n".join(first) + b"\n") + compress(b"\n".join(second) + b"\n"))
    out = read_path(path)
    assert out.lines == numbered(first + second)
    assert out.errors == []


def assert_read_up_to_a_break(got: list[tuple[int, bytes]], lines: list[bytes]) -> None:
    """Every line up to the break, numbered right; the last one may be cut mid-way."""
    if not got:
        return
    n = len(got)
    assert got[:-1] == numbered(lines[: n - 1])
    last_no, last = got[-1]
    assert last_no == n
    assert lines[n - 1].startswith(last)


def _big_lines() -> list[bytes]:
    # incompressible enough that half of the compressed file holds many whole zstd blocks
    rng = random.Random(5)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
    return [b'{"eventId":"%d","pad":"%s"}' % (i, bytes(rng.choice(alphabet) for _ in range(rng.randint(20, 200))))
            for i in range(8000)]


@pytest.mark.parametrize("ext", [".gz", ".zst", ".deflate"])
def test_truncated_file_yields_the_lines_before_the_break_then_a_file_error(tmp_path: Path, ext: str) -> None:
    lines = _big_lines()
    packed = COMPRESSORS[ext](b"\n".join(lines) + b"\n")
    path = tmp_path / f"cut.ndjson{ext}"
    path.write_bytes(packed[: len(packed) // 2])
    out = read_path(path, ReadLimits(batch_size=500))
    assert out.kinds[-1] == "error"
    [error] = out.errors
    assert error.uri == str(path)
    assert error.message.startswith("EOFError")
    assert 1000 < len(out.lines) < len(lines)
    assert_read_up_to_a_break(out.lines, lines)
    assert out.dead == []


@pytest.mark.parametrize("ext", [".gz", ".zst"])
def test_file_cut_just_before_its_end_marker(tmp_path: Path, ext: str) -> None:
    lines = envelope_lines(40)
    packed = COMPRESSORS[ext](b"\n".join(lines) + b"\n")
    path = tmp_path / f"cut.ndjson{ext}"
    path.write_bytes(packed[:-3])
    out = read_path(path)
    assert len(out.errors) == 1
    assert out.kinds[-1] == "error"
    assert_read_up_to_a_break(out.lines, lines)  # a one-block zstd file may yield nothing at all


def test_corrupt_gzip_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson.gz"
    path.write_bytes(b"this is not gzip at all\n")
    out = read_path(path)
    assert out.lines == []
    assert [e.uri for e in out.errors] == [str(path)]


# --- NDJSON split into byte ranges -------------------------------------------------------------


def _split_file(tmp_path: Path) -> tuple[Path, list[bytes]]:
    lines = envelope_lines(40) + [b"", b"   "] + envelope_lines(10, seed=9) + [b'{"long":"' + b"L" * 400 + b'"}']
    lines += envelope_lines(5, seed=3)
    path = tmp_path / "split.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


@pytest.mark.parametrize("split_bytes", [1, 7, 50, 64, 100, 333, 1000, 4096])
def test_splits_yield_every_line_once_with_unsplit_numbers(tmp_path: Path, split_bytes: int) -> None:
    path, _ = _split_file(tmp_path)
    limits = ReadLimits(max_line_bytes=300, batch_size=8)
    whole = read_path(path, limits)
    assert len(tasks_for(path)) == 1
    tasks = tasks_for(path, split_bytes)
    assert len(tasks) > 1
    split = read_path(path, limits, split_bytes)
    assert split.lines == whole.lines
    assert len(whole.lines) == 55
    assert split.counts == whole.counts == Counter({"blank_lines": 2, "read": 1})
    assert [(d["source_line"], d["raw_bytes"]) for d in split.dead] == [(53, 411)]
    assert split.errors == []


def test_split_boundaries_exactly_after_newlines(tmp_path: Path) -> None:
    lines = [b'{"n":%04d}' % i for i in range(60)]  # 10 bytes each, 11 with the newline
    path = tmp_path / "fixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    tasks = tasks_for(path, 22)
    assert [t.start % 11 for t in tasks] == [0] * len(tasks)  # every boundary right after a newline
    assert len(tasks) == 30
    assert read_path(path, split_bytes=22).lines == numbered(lines)


def test_split_plan_covers_the_file(tmp_path: Path) -> None:
    path, _ = _split_file(tmp_path)
    size = path.stat().st_size
    tasks = tasks_for(path, 100)
    assert tasks[0].start == 0 and tasks[-1].end == size
    assert all(a.end == b.start for a, b in pairwise(tasks))
    assert [t.split_index for t in tasks] == list(range(len(tasks)))
    assert {t.splits for t in tasks} == {len(tasks)}
    assert sum(count_newlines(t) for t in tasks) == path.read_bytes().count(b"\n")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 80), st.sampled_from([0, 1, 2])), min_size=1, max_size=40),
    st.integers(1, 120),
    st.booleans(),
)
def test_splits_match_the_whole_read_for_any_layout(lengths: list[int], split_bytes: int, final_newline: bool) -> None:
    lines = [(b"%d:" % i + b"a" * n)[:n] if n else b"" for i, n in enumerate(lengths)]
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.ndjson"
        path.write_bytes(data)
        limits = ReadLimits(max_line_bytes=60, batch_size=5)
        whole = read_path(path, limits)
        split = read_path(path, limits, split_bytes)
    assert split.lines == whole.lines
    assert split.counts == whole.counts
    assert [(d["source_line"], d["raw_bytes"]) for d in split.dead] == [(d["source_line"], d["raw_bytes"])
                                                                       for d in whole.dead]
    expected = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and len(line) <= 60]
    assert whole.lines == expected


def test_compressed_ndjson_is_never_split(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(envelope_lines(100)) + b"\n"))
    [task] = tasks_for(path, 10)
    assert (task.start, task.end, task.splits, task.compression) == (0, None, 1, "gzip")


# --- JSON documents ----------------------------------------------------------------------------


def test_json_top_level_array_gives_an_index_per_element(tmp_path: Path) -> None:
    envs = [{"eventId": f"e{i}", "n": i} for i in range(5)]
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf\n  " + orjson.dumps(envs, option=orjson.OPT_INDENT_2))
    out = read_path(path, ReadLimits(batch_size=2))
    assert out.kinds == ["records", "records", "records"]
    assert out.records == [(e, orjson.dumps(e), None, i) for i, e in enumerate(envs)]
    assert out.lines == [] and out.dead == []


def test_json_array_keeps_non_objects_for_the_parse_stage(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b'[{"a":1}, 5, "x"]')
    assert read_path(path).records == [({"a": 1}, b'{"a":1}', None, 0), (5, b"5", None, 1), ("x", b'"x"', None, 2)]


def test_json_empty_array_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b" [ ] ")
    out = read_path(path)
    assert out.counts == Counter({"read": 1})
    [d] = out.dead
    assert [r["code"] for r in d["reasons"]] == ["parse:empty_array"]
    assert d["raw_payload"] == " [ ] "


def test_json_file_that_is_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b'{"a":1}\r\n\n{"b":2}\n')
    out = read_path(path)
    assert out.lines == [(1, b'{"a":1}'), (3, b'{"b":2}')]
    assert out.counts == Counter({"blank_lines": 1})
    assert out.records == []


def test_json_file_of_ndjson_arrays(tmp_path: Path) -> None:
    # a line per array: not one document, so read as lines (the parse stage splits each array)
    path = tmp_path / "export.json"
    path.write_bytes(b'[{"a":1}]\n[{"b":2},{"c":3}]\n')
    assert read_path(path).lines == [(1, b'[{"a":1}]'), (2, b'[{"b":2},{"c":3}]')]


def test_compressed_json_document(tmp_path: Path) -> None:
    envs = [{"eventId": "e1"}, {"eventId": "e2"}]
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(envs)))
    assert [(r, i) for r, _, _, i in read_path(path).records] == [(envs[0], 0), (envs[1], 1)]


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "key,tmpId,eventId,name,url,data,v,timestamp,clientId,ua\n"
        'k1,t1,e1,purchase,https://x/,"{""ids"":[""A"",""B""],""value"":9.5}",1,1763000000123,,Mozilla\n'
        "k2,t2,e2,page_view,unknown,,1.0,1763000000.5,user-7,\n"
        "k3,t3,e3,page_view,u,{not json},1,,,\n",
        encoding="utf-8",
    )
    out = read_path(path)
    assert out.records == [
        ({"key": "k1", "tmpId": "t1", "eventId": "e1", "name": "purchase", "url": "https://x/",
          "data": {"ids": ["A", "B"], "value": 9.5}, "v": 1, "timestamp": 1763000000123, "ua": "Mozilla"},
         orjson.dumps({"key": "k1", "tmpId": "t1", "eventId": "e1", "name": "purchase", "url": "https://x/",
                       "data": '{"ids":["A","B"],"value":9.5}', "v": "1", "timestamp": "1763000000123",
                       "clientId": "", "ua": "Mozilla"}),
         2, None),
        ({"key": "k2", "tmpId": "t2", "eventId": "e2", "name": "page_view", "url": "unknown", "v": 1.0,
          "timestamp": 1763000000.5, "clientId": "user-7"},
         orjson.dumps({"key": "k2", "tmpId": "t2", "eventId": "e2", "name": "page_view", "url": "unknown",
                       "data": "", "v": "1.0", "timestamp": "1763000000.5", "clientId": "user-7", "ua": ""}),
         3, None),
        ({"key": "k3", "tmpId": "t3", "eventId": "e3", "name": "page_view", "url": "u", "data": "{not json}",
          "v": 1},
         orjson.dumps({"key": "k3", "tmpId": "t3", "eventId": "e3", "name": "page_view", "url": "u",
                       "data": "{not json}", "v": "1", "timestamp": "", "clientId": "", "ua": ""}),
         4, None),
    ]
    rec = out.records[0][0]
    assert type(rec["v"]) is int and type(rec["timestamp"]) is int
    assert out.dead == [] and out.counts == Counter()


def test_csv_numbers_that_are_not_numbers_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("eventId,v,timestamp\ne1,one,soon\n", encoding="utf-8")
    assert [r for r, *_ in read_path(path).records] == [{"eventId": "e1", "v": "one", "timestamp": "soon"}]


def test_csv_short_and_long_rows_are_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("eventId,name,url\ne1,page_view,u\ne2,page_view\n\ne3,a,b,c\ne4,n,u\n", encoding="utf-8")
    out = read_path(path)
    assert [(r["eventId"], line) for r, _, line, _ in out.records] == [("e1", 2), ("e4", 6)]
    assert out.counts == Counter({"read": 2, "blank_lines": 1})
    assert [(d["stage"], [r["code"] for r in d["reasons"]], d["source_line"]) for d in out.dead] == [
        ("parse", ["parse:invalid_csv"], 3),
        ("parse", ["parse:invalid_csv"], 5),
    ]
    assert "(2 cells, header has 3)" in out.dead[0]["reasons"][0]["message"]
    assert orjson.loads(out.dead[0]["raw_payload"]) == {"eventId": "e2", "name": "page_view"}


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbfeventId,v\r\ne1,1\r\ne2,1\r\n")
    assert [(r, line) for r, _, line, _ in read_path(path).records] == [
        ({"eventId": "e1", "v": 1}, 2), ({"eventId": "e2", "v": 1}, 3)]


def test_csv_invalid_utf8_row_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"eventId,url\ne1,u\ne2,caf\xe9\ne3,v\n")
    out = read_path(path)
    assert [r["eventId"] for r, *_ in out.records] == ["e1", "e3"]
    [d] = out.dead
    assert [r["code"] for r in d["reasons"]] == ["read:invalid_utf8"]
    assert base64.b64decode(d["raw_payload_base64"]) == b"e2,caf\xe9"
    assert d["source_line"] == 3


def test_compressed_csv(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(b"eventId,v\ne1,1\n"))
    assert [r for r, *_ in read_path(path).records] == [{"eventId": "e1", "v": 1}]


# --- Parquet -----------------------------------------------------------------------------------


def _parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_data_as_json_text(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "e.parquet", {
        "eventId": ["e1", "e2", "e3"],
        "v": [1, 1, 1],
        "timestamp": [1_763_000_000_000, None, 1_763_000_000_001],
        "clientId": [None, "user-1", None],
        "data": ['{"ids":["A"],"value":12.5}', None, "not json"],
    })
    out = read_path(path)
    assert [(r, line, index) for r, _, line, index in out.records] == [
        ({"eventId": "e1", "v": 1, "timestamp": 1_763_000_000_000, "clientId": None,
          "data": {"ids": ["A"], "value": 12.5}}, 1, None),
        ({"eventId": "e2", "v": 1, "clientId": "user-1"}, 2, None),
        ({"eventId": "e3", "v": 1, "timestamp": 1_763_000_000_001, "clientId": None, "data": "not json"}, 3, None),
    ]
    # the raw payload is the row as it is in the file
    assert orjson.loads(out.records[0][1])["data"] == '{"ids":["A"],"value":12.5}'


def test_parquet_data_as_struct(tmp_path: Path) -> None:
    data = pa.array([{"ids": ["A", "B"], "transId": "T1", "value": 3.5, "locale": None},
                     {"ids": None, "transId": None, "value": None, "locale": "fr"}])
    path = _parquet(tmp_path / "s.parquet", {"eventId": ["e1", "e2"], "data": data})
    out = read_path(path)
    assert [r for r, *_ in out.records] == [
        {"eventId": "e1", "data": {"ids": ["A", "B"], "transId": "T1", "value": 3.5}},
        {"eventId": "e2", "data": {"locale": "fr"}},
    ]
    assert orjson.loads(out.records[1][1]) == {"eventId": "e2", "data": {"ids": None, "transId": None,
                                                                         "value": None, "locale": "fr"}}


def test_parquet_data_as_map(tmp_path: Path) -> None:
    data = pa.array([[("ids", "A;B"), ("locale", "fr")], [], None], pa.map_(pa.string(), pa.string()))
    path = _parquet(tmp_path / "m.parquet", {"eventId": ["e1", "e2", "e3"], "data": data})
    assert [r for r, *_ in read_path(path).records] == [
        {"eventId": "e1", "data": {"ids": "A;B", "locale": "fr"}},
        {"eventId": "e2", "data": {}},
        {"eventId": "e3"},
    ]


def test_parquet_row_numbers_run_across_batches(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "n.parquet", {"eventId": [f"e{i}" for i in range(7)]})
    out = read_path(path, ReadLimits(batch_size=3))
    assert out.kinds == ["records", "records", "records"]
    assert [(r["eventId"], line) for r, _, line, _ in out.records] == [(f"e{i}", i + 1) for i in range(7)]


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Paris"])
def test_parquet_timestamp_column_is_read_as_utc_micros(tmp_path: Path, tz: str | None) -> None:
    micros = [1_763_000_000_123_456, -1_500_000]  # the second one before 1970
    path = _parquet(tmp_path / "t.parquet",
                    {"eventId": ["e1", "e2"], "timestamp": pa.array(micros, pa.timestamp("us", tz=tz))})
    assert [r["timestamp"] for r, *_ in read_path(path).records] == micros


def test_parquet_naive_timestamp_does_not_depend_on_the_local_time_zone(tmp_path: Path) -> None:
    micros = 1_763_000_000_123_000
    path = _parquet(tmp_path / "t.parquet",
                    {"eventId": ["e1"], "timestamp": pa.array([micros // 1000], pa.timestamp("ms"))})
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        [(record, *_)] = read_path(path).records
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert record["timestamp"] == micros


def test_corrupt_parquet_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 definitely not parquet")
    out = read_path(path)
    assert out.records == []
    assert [e.uri for e in out.errors] == [str(path)]


# --- finding inputs ----------------------------------------------------------------------------


def test_expand_patterns_no_match_names_the_pattern(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing-here-*.ndjson")
    with pytest.raises(InputError, match="nothing-here-"):
        expand_patterns([pattern])


def test_expand_patterns_one_empty_pattern_among_good_ones(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(b"{}\n")
    missing = str(tmp_path / "b*.csv")
    with pytest.raises(InputError) as err:
        expand_patterns([str(tmp_path / "*.ndjson"), missing])
    assert repr(missing) in str(err.value)


def test_expand_patterns_sorted_without_repeats(tmp_path: Path) -> None:
    (tmp_path / "b.ndjson").write_bytes(b"{}\n{}\n")
    (tmp_path / "a.ndjson").write_bytes(b"{}\n")
    (tmp_path / "c.csv").write_bytes(b"x\n")
    found = expand_patterns([str(tmp_path / "*.ndjson"), str(tmp_path / "a.*")])
    assert found == [(str(tmp_path / "a.ndjson"), 3), (str(tmp_path / "b.ndjson"), 6)]


@pytest.mark.parametrize(
    ("name", "fmt", "compression"),
    [
        ("x.ndjson", "ndjson", "none"),
        ("x.jsonl", "ndjson", "none"),
        ("x.JSONL", "ndjson", "none"),
        ("x.ldjson.gz", "ndjson", "gzip"),
        ("x.jsonlines.bz2", "ndjson", "bzip2"),
        ("x.json", "json", "none"),
        ("x.json.zst", "json", "zstd"),
        ("x.csv.deflate", "csv", "deflate"),
        ("x.CSV.GZ", "csv", "gzip"),
        ("x.parquet", "parquet", "none"),
        ("x.pq", "parquet", "none"),
        ("gs://bucket/dir.json/x.ndjson.zstd", "ndjson", "zstd"),
    ],
)
def test_format_and_compression_from_the_name(name: str, fmt: str, compression: str) -> None:
    assert format_of(name) == fmt
    assert compression_of(name) == compression


@pytest.mark.parametrize("name", ["x.txt", "x.gz", "x", "x.ndjson.tar", "x.json.7z", "export.avro"])
def test_unknown_extension_raises(name: str) -> None:
    with pytest.raises(InputError, match="--input_format"):
        format_of(name)


def test_forced_format_wins() -> None:
    assert format_of("x.txt", "ndjson") == "ndjson"
    assert format_of("x.csv", "json") == "json"


# --- files that are something else than their name says (adversarial pass of issue 15) ------------------------
@pytest.mark.parametrize(("data", "says"), [
    ("\ufeff{}\n".encode("utf-16-le"), "UTF-16 text"), ("\ufeff{}\n".encode("utf-16-be"), "UTF-16 text"),
    ("{}\n".encode("utf-32"), "UTF-32 text"), (gzip.compress(b"{}\n"), "name it with .gz"),
    (zstandard.ZstdCompressor().compress(b"{}\n"), "name it with .zst"), (bz2.compress(b"{}\n"), "name it with .bz2"),
    (b"PAR1\x15\x04", "a Parquet file"),
])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_a_json_file_that_is_something_else_is_one_file_problem(tmp_path, data, says, fmt):
    path = tmp_path / f"export.{fmt}"
    path.write_bytes(data * 50)
    items = list(read_task(ReadTask(str(path), fmt, "none", path.stat().st_size), CTX, ReadLimits()))
    assert [type(i) for i in items] == [FileError]
    assert items[0].message.startswith("not JSON: the file is") and says in items[0].message
    # a later byte range of the same file says nothing more (the first range reported it)
    later = ReadTask(str(path), fmt, "none", path.stat().st_size, 10, path.stat().st_size, 1, 2)
    assert list(read_task(later, CTX, ReadLimits())) == []


def test_a_utf8_bom_and_text_starting_like_magic_are_still_read(tmp_path):
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps({"a": 1}) + b"\nBZh9 not bzip2\n")
    items = list(read_task(ReadTask(str(path), "ndjson", "none", path.stat().st_size), CTX, ReadLimits()))
    assert not [i for i in items if isinstance(i, FileError)]
    assert sum(len(i.lines) for i in items if isinstance(i, LineBatch)) == 2


def test_duplicate_envelope_columns_are_a_file_problem(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("eventId,key,eventId,extra,extra\n1,2,3,4,5\n")
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"]), pa.array(["c"])], names=["v", "url", "v"])
    pq.write_table(table, tmp_path / "a.parquet")
    for path, fmt, name in ((csv_path, "csv", "eventId"), (tmp_path / "a.parquet", "parquet", "v")):
        items = list(read_task(ReadTask(str(path), fmt, "none", path.stat().st_size), CTX, ReadLimits()))
        assert [type(i) for i in items] == [FileError] and name in items[0].message.replace(":", " ").split()


def test_a_folder_given_as_input_says_to_give_its_files(tmp_path):
    (tmp_path / "exports.ndjson").mkdir()
    with pytest.raises(InputError, match=r"is a folder .*give the files in it, e.g. --input '.*exports.ndjson/\*'"):
        expand_patterns([str(tmp_path / "exports.ndjson")])
    (tmp_path / "b.ndjson").write_bytes(b"{}\n")  # a glob matching a folder and a file: the file
    assert [Path(u).name for u, _ in expand_patterns([str(tmp_path / "*")])] == ["b.ndjson"]
