"""Finding inputs and telling their format and compression; files whose content is not what their
name says."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.read_helpers import CTX
from transforms.core.records import LineBatch
from transforms.core.settings import ReadLimits
from transforms.sources.files import InputError, ReadTask, compression_of, expand_patterns, format_of
from transforms.sources.read import read_task
from transforms.sources.read_types import FileError

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
