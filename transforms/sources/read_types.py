"""What every reader yields besides batches, and the limits it reads under (shared by the readers)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

from transforms.core.payloads import MAX_STORED_BYTES
from transforms.sources.files import DECOMPRESSION_ERRORS

BLOCK = 8 << 20
"""Bytes read at a time."""
READ_ERRORS = (*DECOMPRESSION_ERRORS, UnicodeDecodeError, csv.Error)
"""What a source that breaks mid-way raises (pyarrow's ArrowInvalid is a ValueError)."""


@dataclass
class FileError:
    """A source that could not be read to its end."""

    uri: str
    message: str


@dataclass
class Count:
    uri: str
    metric: str
    n: int = 1


def duplicated_fields(names: list[str]) -> str | None:
    """The envelope fields a CSV header or Parquet schema names more than once (a reader would keep
    either column's value silently), as text; None when there is none."""
    from schemas.envelope import ENVELOPE_BY_NAME

    twice = sorted({n for n in names if n in ENVELOPE_BY_NAME and names.count(n) > 1})
    return ", ".join(twice) or None


def cut_note(stored: str | None, length: int = 0) -> str:
    if stored:
        return "payload cut to the limit here, kept whole in raw_payload_uri"
    if length > MAX_STORED_BYTES:
        return (f"payload cut to the limit (not kept whole: over {MAX_STORED_BYTES:,} bytes, larger than any "
                f"BigQuery row)")
    return "payload cut to the limit"


def read_all(f) -> tuple[bytes, Exception | None]:
    """Everything the stream gives, and the error that stopped it early (a truncated gzip): what was
    decoded before the break is still read."""
    chunks: list[bytes] = []
    read = getattr(f, "read1", f.read)
    try:
        while block := read(BLOCK):
            chunks.append(block)
    except READ_ERRORS as err:
        return b"".join(chunks), err
    return b"".join(chunks), None
