"""Read stage: one read task into batches of lines (NDJSON) or records (JSON array, CSV, Parquet).

Everything the reader meets is accounted for: each record is counted as read, blank lines are
counted apart, an over-long line is dead-lettered here, and a file that breaks mid-way (a truncated
gzip, a corrupt Parquet footer) is reported as a file error after the records read before the break.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.envelope import PARSE_REASONS, READ_REASONS
from transforms.records import ImportContext, LineBatch, RecordBatch, compact_json, dead_letter, reason
from transforms.sources import DECOMPRESSION_ERRORS, ReadTask, open_source

log = logging.getLogger(__name__)
BLOCK = 8 << 20
PROGRESS_SECONDS = 15.0
CSV_NUMBER_FIELDS = ("v", "timestamp")
READ_ERRORS = (*DECOMPRESSION_ERRORS, UnicodeDecodeError, csv.Error)
"""What a source that breaks mid-way raises (pyarrow's ArrowInvalid is a ValueError)."""


@dataclass(frozen=True)
class ReadLimits:
    batch_size: int = 50_000
    max_line_bytes: int = 1 << 20


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


def count_newlines(task: ReadTask) -> int:
    """Newlines in the task's byte range (to number the lines of the ranges after it)."""
    with open_source(task.uri, "none") as f:
        f.seek(task.start)
        remaining = (task.end if task.end is not None else task.size) - task.start
        total = 0
        while remaining > 0:
            block = f.read(min(BLOCK, remaining))
            if not block:
                break
            total += block.count(b"\n")
            remaining -= len(block)
        return total


def _skip_partial_line(f) -> int:
    """Move to the start of the next line; returns the bytes skipped (0 if at a line start)."""
    f.seek(f.tell() - 1)
    if f.read(1) == b"\n":
        return 0
    skipped = 0
    while True:
        block = f.read(1 << 16)
        if not block:
            return skipped
        pos = block.find(b"\n")
        if pos >= 0:
            f.seek(f.tell() - len(block) + pos + 1)
            return skipped + pos + 1
        skipped += len(block)


def _split_lines(f, start: int, end: int | None, max_line: int) -> Iterator[tuple[bytes, int]]:
    """(line, full length) for each line starting before ``end``; a line longer than ``max_line``
    is yielded cut to ``max_line`` bytes (its full length tells). Trailing CR is dropped."""
    offset = start
    pending: list[bytes] = []
    pending_len = 0
    # read1 hands over what one underlying read decompressed, so a stream that breaks loses nothing
    # it had already decoded (a plain read(BLOCK) would raise and drop the whole block)
    read = getattr(f, "read1", f.read)
    while True:
        try:
            block = read(BLOCK)
        except READ_ERRORS:
            if pending_len:  # the cut-off last line is a record too: it will fail to parse
                yield b"".join(pending), pending_len
            raise
        if not block:
            break
        parts = block.split(b"\n")
        for part in parts[:-1]:
            length = pending_len + len(part)
            if pending:
                line = b"".join(pending) + part[: max(0, max_line + 1 - pending_len)]
                pending, pending_len = [], 0
            else:
                line = part
            yield (line[:-1] if line.endswith(b"\r") else line), length
            offset += length + 1
            if end is not None and offset >= end:
                return
        tail = parts[-1]
        if pending_len <= max_line:
            pending.append(tail[: max_line + 1 - pending_len])
        pending_len += len(tail)
    if pending_len:
        line = b"".join(pending)
        yield (line[:-1] if line.endswith(b"\r") else line), pending_len


def read_ndjson(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int) -> Iterator:
    with open_source(task.uri, task.compression) as f:
        line_no = first_line
        if task.start > 0:
            f.seek(task.start)
            if _skip_partial_line(f):
                line_no += 1
            start = f.tell()
            if task.end is not None and start >= task.end:
                return  # a line spans this whole range: the task it starts in reads it
        else:
            start = 0
        yield from _line_batches(_split_lines(f, start, task.end, limits.max_line_bytes),
                                 task.uri, ctx, limits, line_no)


def _line_batches(lines, uri: str, ctx: ImportContext, limits: ReadLimits, line_no: int) -> Iterator:
    batch = LineBatch(uri, [], [])
    blank = 0
    last_log = time.monotonic()
    try:
        for line, length in lines:
            if length > limits.max_line_bytes:
                yield Count(uri, "read")
                yield dead_letter(
                    ctx, "read",
                    [reason("read:line_too_long", f"{READ_REASONS['read:line_too_long']} "
                            f"({length} > {limits.max_line_bytes} bytes); payload cut to the limit.")],
                    line[: limits.max_line_bytes], uri, line_no, truncated=True, raw_size=length,
                )
            elif not line or line.isspace():
                blank += 1
            else:
                batch.lines.append(line)
                batch.line_numbers.append(line_no)
                if len(batch.lines) >= limits.batch_size:
                    yield batch
                    batch = LineBatch(uri, [], [])
                    if time.monotonic() - last_log > PROGRESS_SECONDS:
                        last_log = time.monotonic()
                        log.info("reading %s: line %d", uri, line_no)
            line_no += 1
    except READ_ERRORS:
        # the file broke mid-way: account for what was read, then let the error go on up
        yield from _flush(batch, blank)
        raise
    yield from _flush(batch, blank)


def _flush(batch: LineBatch, blank: int) -> Iterator:
    if batch.lines:
        yield batch
    if blank:
        yield Count(batch.source_uri, "blank_lines", blank)


def read_json_document(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A ``.json`` file: one top-level array of envelopes; anything else is read as NDJSON."""
    with open_source(task.uri, task.compression) as f:
        content = f.read()
    body = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"["):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, list):
            batch = RecordBatch(task.uri)
            for index, element in enumerate(value):
                batch.append(element, compact_json(element), None, index)
                if len(batch) >= limits.batch_size:
                    yield batch
                    batch = RecordBatch(task.uri)
            if len(batch):
                yield batch
            if not value:
                yield Count(task.uri, "read")
                yield dead_letter(ctx, "parse", [reason("parse:empty_array", PARSE_REASONS["parse:empty_array"])],
                                  content, task.uri, None)
            return
    yield from _line_batches(_split_lines(io.BytesIO(content), 0, None, limits.max_line_bytes),
                             task.uri, ctx, limits, 1)


def _csv_value(name: str, text: str) -> object:
    if name == "data":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    if name in CSV_NUMBER_FIELDS:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return text


def read_csv(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """CSV with a header row named like the envelope fields; an empty cell means absent."""
    with open_source(task.uri, task.compression) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        batch = RecordBatch(task.uri)
        try:
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    yield Count(task.uri, "blank_lines")
                    continue
                cells = dict(zip(header, row))
                try:
                    raw = orjson.dumps(cells)
                except orjson.JSONEncodeError:
                    yield Count(task.uri, "read")
                    yield dead_letter(ctx, "parse", [reason("read:invalid_utf8", READ_REASONS["read:invalid_utf8"])],
                                      ",".join(row).encode("utf-8", "surrogateescape"), task.uri, line)
                    continue
                if len(row) != len(header):
                    yield Count(task.uri, "read")
                    yield dead_letter(ctx, "parse", [reason(
                        "parse:invalid_csv", f"{PARSE_REASONS['parse:invalid_csv']} "
                        f"({len(row)} cells, header has {len(header)}).")], raw, task.uri, line)
                    continue
                record = {k: _csv_value(k, v) for k, v in cells.items() if v != ""}
                batch.append(record, raw, line, None)
                if len(batch) >= limits.batch_size:
                    yield batch
                    batch = RecordBatch(task.uri)
        except READ_ERRORS:
            if len(batch):
                yield batch
            raise
        if len(batch):
            yield batch


def _plain_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Top-level columns as JSON-like values: TIMESTAMP as epoch µs (a naive one read as UTC), DATE,
    TIME and DECIMAL as text, so no Python datetime (local time zones, year 10000) gets in."""
    columns = []
    for field, column in zip(batch.schema, batch.columns):
        kind = field.type
        if pa.types.is_timestamp(kind):
            column = pc.cast(pc.cast(column, pa.timestamp("us", tz=kind.tz)), pa.int64())
        elif pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_decimal(kind):
            column = pc.cast(column, pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _parquet_record(row: dict) -> dict:
    data = row.get("data")
    if isinstance(data, str):
        try:
            row["data"] = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    elif isinstance(data, list):  # a MAP column reads as (key, value) pairs; JSON keys are strings
        row["data"] = {k if isinstance(k, str) else str(k): v for k, v in data}
    elif isinstance(data, dict):  # a STRUCT column has every key of the file: drop the unset ones
        row["data"] = {k: v for k, v in data.items() if v is not None}
    return {k: v for k, v in row.items() if v is not None or k == "clientId"}


def read_parquet(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    with open_source(task.uri, "none") as f:
        parquet = pq.ParquetFile(f)
        row_no = 1
        for arrow_batch in parquet.iter_batches(batch_size=limits.batch_size):
            batch = RecordBatch(task.uri)
            for row in _plain_columns(arrow_batch).to_pylist():
                raw = orjson.dumps(row, default=str)  # before _parquet_record rewrites the row in place
                batch.append(_parquet_record(row), raw, row_no, None)
                row_no += 1
            yield batch


def read_task(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int = 1) -> Iterator:
    """Everything one task yields: LineBatch / RecordBatch, dead-letter dicts, Count, FileError."""
    readers = {
        "ndjson": lambda: read_ndjson(task, ctx, limits, first_line),
        "json": lambda: read_json_document(task, ctx, limits),
        "csv": lambda: read_csv(task, ctx, limits),
        "parquet": lambda: read_parquet(task, ctx, limits),
    }
    try:
        yield from readers[task.format]()
    except READ_ERRORS as err:
        yield FileError(task.uri, f"{type(err).__name__}: {err}")
