"""Finding and opening input files: patterns, formats, compression, byte-range plans.

Files are opened through Beam's ``FileSystems`` (so ``gs://`` works like a local path) as raw bytes,
and decompressed here with Python's own decompressors: Beam's ``CompressedFile`` returns a truncated
gzip or zstd stream as if it had ended normally, and a broken export must be reported, not
silently shortened.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import os
import zlib
from dataclasses import dataclass

import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import transforms.core.gcs  # noqa: F401  (Beam's GCS clients: anonymous under STORAGE_EMULATOR_HOST)
from transforms.core import progress

REPLAY_FORMAT = "replay"
"""``pipeline.replay``'s own file (``.replay``): one dead letter's payload per line, base64, so a
payload holding line breaks (a pretty-printed message body) is still one record. Not an
``--input_format`` choice: only its extension selects it."""
_FORMAT_BY_EXTENSION = {
    ".ndjson": "ndjson", ".jsonl": "ndjson", ".jsonlines": "ndjson", ".ldjson": "ndjson",
    ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".replay": REPLAY_FORMAT,
}
_COMPRESSION_BY_EXTENSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2", ".zst": "zstd",
                             ".zstd": "zstd", ".deflate": "deflate"}
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, zstandard.ZstdError, ValueError)
"""What a broken compressed stream raises while it is read."""


class InputError(ValueError):
    """An input that cannot be read at all (no match, unknown format): fails before any work."""


@dataclass(frozen=True)
class ReadTask:
    """One unit of reading: a whole file, or a byte range of a large uncompressed NDJSON file."""

    uri: str
    format: str
    compression: str  # none | gzip | bzip2 | zstd | deflate
    size: int
    start: int = 0
    end: int | None = None  # None: to the end of the file
    split_index: int = 0
    splits: int = 1


def compression_of(path: str) -> str:
    lowered = path.lower()
    for ext, kind in _COMPRESSION_BY_EXTENSION.items():
        if lowered.endswith(ext):
            return kind
    return "none"


def format_of(path: str, forced: str = "auto") -> str:
    if forced != "auto":
        return forced
    lowered = path.lower()
    for ext in _COMPRESSION_BY_EXTENSION:
        if lowered.endswith(ext):
            lowered = lowered[: -len(ext)]
            break
    for ext, fmt in _FORMAT_BY_EXTENSION.items():
        if lowered.endswith(ext):
            return fmt
    raise InputError(
        f"cannot tell the format of {path!r} from its extension; name it .ndjson/.jsonl, .json, .csv "
        f"or .parquet (optionally compressed: .gz .bz2 .zst .deflate), or pass --input_format"
    )


def expand_patterns(patterns: list[str]) -> list[tuple[str, int]]:
    """(uri, size) of every file the patterns match, sorted and without repeats.

    A pattern that matches nothing is an error naming it.
    """
    found: dict[str, int] = {}
    # a file whose name holds glob characters (`export[1].ndjson`) is taken by its name, not as a pattern
    patterns = [glob.escape(p) if _has_magic(p) and FileSystems.exists(p) else p for p in patterns]
    results = FileSystems.match(list(patterns))
    for pattern, result in zip(patterns, results):
        files = [m for m in result.metadata_list if not m.path.endswith("/") and not _local_folder(m.path)]
        if not files:
            folders = [m.path for m in result.metadata_list if _local_folder(m.path)]
            if folders:
                raise InputError(f"--input {pattern!r} is a folder ({folders[0]}), not a file: give the files in "
                                 f"it, e.g. --input '{folders[0].rstrip('/')}/*'")
            raise InputError(f"--input {pattern!r} matches no file")
        for meta in files:
            found[meta.path] = meta.size_in_bytes
    return sorted(found.items())


def _local_folder(path: str) -> bool:
    return FileSystems.get_scheme(path) is None and os.path.isdir(path)


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def plan_reads(files: list[tuple[str, int]], input_format: str, split_bytes: int) -> list[ReadTask]:
    """Read tasks: large uncompressed NDJSON files are split into byte ranges, others read whole."""
    tasks: list[ReadTask] = []
    for uri, size in files:
        fmt = format_of(uri, input_format)
        compression = compression_of(uri)
        if fmt == "ndjson" and compression == "none" and split_bytes > 0 and size > split_bytes:
            splits = -(-size // split_bytes)
            step = -(-size // splits)
            for k in range(splits):
                tasks.append(ReadTask(uri, fmt, compression, size, k * step,
                                      min(size, (k + 1) * step), k, splits))
        else:
            tasks.append(ReadTask(uri, fmt, compression, size))
    return tasks


class _StreamDecompressor(io.RawIOBase):
    """A readable stream over a zlib, zstd or bzip2 compressed one that raises ``EOFError`` when the
    input ends before the compressed stream does (each format may hold several frames); an empty
    input is an empty stream."""

    def __init__(self, raw, make):
        self._raw = raw
        self._make = make
        self._dec = make()
        self._buffer = b""
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._started and not self._dec.eof:
                    raise EOFError("compressed stream ended before its end-of-stream marker (truncated file?)")
                return 0
            self._feed(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _feed(self, chunk: bytes) -> None:
        while chunk:
            if self._dec.eof:
                self._dec = self._make()
            self._started = True
            self._buffer += self._dec.decompress(chunk)
            chunk = self._dec.unused_data if self._dec.eof else b""


def open_source(uri: str, compression: str):
    """A binary stream of the file's decompressed bytes."""
    raw = FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)
    progress.track_stream(raw)  # the read's progress is told in stored bytes
    if compression == "none":
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bzip2":  # like the others: an empty file is empty, a cut one raises EOFError
        return io.BufferedReader(_StreamDecompressor(raw, bz2.BZ2Decompressor), buffer_size=1 << 20)
    if compression == "zstd":
        stream = _StreamDecompressor(raw, lambda: zstandard.ZstdDecompressor().decompressobj())
    else:  # deflate: a zlib stream, as Beam writes it
        stream = _StreamDecompressor(raw, zlib.decompressobj)
    return io.BufferedReader(stream, buffer_size=1 << 20)
