"""Read stage on NDJSON files: lines, blank lines, over-long lines, batches, compressed copies,
truncated and corrupt compressed files."""

from __future__ import annotations

import base64
import gzip
import random
import zlib
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from tests.read_helpers import COMPRESSORS, CTX, envelope_lines, numbered, read_path, tasks_for
from transforms.core.settings import ReadLimits
from transforms.sources.read import read_task

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
