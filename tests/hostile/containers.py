"""Hostile cases about the file itself: cut or padded gzip, compressed bytes under a plain name, empty
files of every format, a file name with glob characters."""

from __future__ import annotations

import gzip
import zlib

import orjson

from tests.hostile.kit import Expect, case, dumps, env, ndjson


def _truncated_gzip_expect(name: str, cut: bytes, lines_total: int) -> Expect:
    x = Expect(f"{name}: gzip of {lines_total} valid lines cut in the middle: the lines before the break "
               f"are accounted for, the file is reported, exit 1", file_errors=True, exit_code=1)
    decoded = zlib.decompressobj(wbits=31).decompress(cut)
    *complete, partial = decoded.split(b"\n")
    for raw in complete:
        x.good(orjson.loads(raw)["eventId"])
    if partial:
        try:
            x.good(orjson.loads(partial)["eventId"])
        except orjson.JSONDecodeError:
            x.bad("parse:invalid_json")
    return x


@case("truncated.ndjson.gz")
def truncated_gz() -> tuple[bytes, Expect]:
    lines = [dumps(env("tg", i)) for i in range(300)]
    data = gzip.compress(ndjson(lines), mtime=0)
    cut = data[: len(data) // 2]
    return cut, _truncated_gzip_expect("truncated.ndjson.gz", cut, 300)


@case("gzip_header_only.ndjson.gz")
def gzip_header_only() -> tuple[bytes, Expect]:
    x = Expect("only the first 10 bytes of a gzip file: nothing read, the file is reported, exit 1",
               file_errors=True, exit_code=1)
    return gzip.compress(ndjson([dumps(env("gh", 1))]), mtime=0)[:10], x


@case("gzip_trailing_garbage.ndjson.gz")
def gzip_trailing_garbage() -> tuple[bytes, Expect]:
    x = Expect("a complete gzip member followed by bytes that are not gzip: every line is read, the file "
               "is reported (something follows that could not be read), exit 1", file_errors=True, exit_code=1)
    data = gzip.compress(ndjson([dumps(env("gt", i)) for i in range(3)]), mtime=0)
    for i in range(3):
        x.good(f"gt-{i}")
    return data + b"this is not gzip", x


@case("zero_bytes.ndjson")
def zero_bytes_ndjson() -> tuple[bytes, Expect]:
    return b"", Expect("an empty file: nothing read, nothing wrong")


@case("zero_bytes.ndjson.gz")
def zero_bytes_gz() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .gz file (not even a gzip header): read as empty")


@case("zero_bytes.json")
def zero_bytes_json() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .json file: nothing read")


@case("zero_bytes.csv")
def zero_bytes_csv() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .csv file (no header): nothing read")


@case("export[1] (copy).ndjson")
def glob_name() -> tuple[bytes, Expect]:
    x = Expect("a file name with glob characters, given by name: read as that file")
    x.good("gn-1")
    return ndjson([dumps(env("gn", 1))]), x


@case("zero_bytes.ndjson.bz2")
def zero_bytes_bz2() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .bz2 file: read as empty, like an empty .gz")


@case("zero_bytes.parquet")
def zero_bytes_parquet() -> tuple[bytes, Expect]:
    return b"", Expect("an empty .parquet file: nothing read, like an empty .csv")


@case("gzip_without_extension.ndjson")
def gzip_without_extension() -> tuple[bytes, Expect]:
    x = Expect("a gzip file named .ndjson: one file problem that says to name it .gz, not a dead letter per "
               "line of compressed bytes; exit 4", file_errors=True, exit_code=4)
    return gzip.compress(ndjson([dumps(env("gz", i)) for i in range(3)]), mtime=0), x
