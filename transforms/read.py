"""Read stage: one read task into batches of lines (NDJSON) or records (JSON array, CSV, Parquet).

Everything the reader meets is accounted for: each record is counted as read, blank lines are
counted apart, an over-long line is dead-lettered here, and a file that breaks mid-way (a truncated
gzip, a corrupt Parquet footer) is reported as a file error after the records read before the break.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.envelope import ENVELOPE, NUMBER, PARSE_REASONS, READ_REASONS
from transforms.parse import parse_elements, split_json_array
from transforms.records import ImportContext, LineBatch, RecordBatch, compact_json, dead_letter, reason
from transforms.sources import DECOMPRESSION_ERRORS, REPLAY_FORMAT, ReadTask, open_source

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


def _read_all(f) -> tuple[bytes, Exception | None]:
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


def read_json_document(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A ``.json`` file: one top-level array of envelopes, or one (pretty-printed) envelope; anything
    else is read as NDJSON, unless no line of it is JSON either: then the file is reported as not
    JSON (``FileError``), rather than as a dead letter per line.

    An array with a broken element (a NaN, a cut-off end) is read element by element: each element
    is a record of its own, and only the broken ones are dead letters."""
    with open_source(task.uri, task.compression) as f:
        content, error = _read_all(f)
    body = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"["):
        try:
            value = orjson.loads(body)
            elements = None
        except orjson.JSONDecodeError:
            value, elements = None, split_json_array(body)
        if elements:
            yield from _element_batches(elements, task.uri, ctx, limits)
            if error is not None:
                raise error
            return
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
            if error is not None:
                raise error
            return
    elif body.strip() and error is None:
        problem = _not_json(body)
        if isinstance(problem, dict):  # one envelope over several lines (pretty-printed): one record
            batch = RecordBatch(task.uri)
            batch.append(problem, compact_json(problem), None, 0)
            yield batch
            return
        if problem:
            yield FileError(task.uri, problem)
            return
    yield from _line_batches(_split_lines(io.BytesIO(content), 0, None, limits.max_line_bytes),
                             task.uri, ctx, limits, 1)
    if error is not None:
        raise error


NOT_JSON = "not JSON"
"""How a ``.json`` file that is neither a document nor NDJSON starts its ``FileError`` message (the
launcher gives such a file its own exit code)."""


def _not_json(body: bytes) -> dict | str | None:
    """For a ``.json`` body that is not an array: the envelope when the whole body is one multi-line
    object; a ``FileError`` message when it is JSON but no object (a number, a string) or no line of
    it is JSON either (a file problem, not a dead letter per line); None when it reads as NDJSON."""
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        whole = ...
    if isinstance(whole, dict):
        return whole if b"\n" in body.strip() else None
    if whole is not ...:
        return f"{NOT_JSON}: the file holds a single {type(whole).__name__} value, not an array or object of envelopes"
    for text in body.splitlines():
        if text.strip():
            try:
                orjson.loads(text)
                return None  # NDJSON, with what broken lines it has as dead letters
            except orjson.JSONDecodeError:
                continue
    return (f"{NOT_JSON}: neither one JSON document (an array of envelopes) nor one envelope per line; "
            f"a cut-off object or text of another format?")


def _element_batches(elements: list[bytes], uri: str, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    parsed, dead = parse_elements(elements, ctx, uri, None, limits.max_line_bytes)
    for item in dead:
        yield Count(uri, "read")
        yield item
    batch = RecordBatch(uri)
    for value, raw, index in parsed:
        batch.append(value, raw, None, index)
        if len(batch) >= limits.batch_size:
            yield batch
            batch = RecordBatch(uri)
    if len(batch):
        yield batch


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


class _PhysicalLines:
    """The text lines a ``csv.reader`` consumes, kept until the row they make is taken: a row's exact
    text (for a row the reader refuses) and the number of its first line."""

    def __init__(self, text) -> None:
        self._text = text
        self.pending: list[str] = []
        self.pending_chars = 0
        self.consumed = 0  # lines handed over before the pending ones

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.pending.append(line)
        self.pending_chars += len(line)
        return line

    def take(self, limit: int) -> tuple[str, int, int]:
        """(the pending text cut to ``limit`` characters, its full length, its first line number)."""
        text = "".join(self.pending[:limit])[:limit] if self.pending_chars > limit else "".join(self.pending)
        first, size = self.consumed + 1, self.pending_chars
        self.consumed += len(self.pending)
        self.pending, self.pending_chars = [], 0
        return text, size, first


def _csv_too_long(ctx: ImportContext, uri: str, text: str, size: int, line: int, limits: ReadLimits) -> dict:
    message = (f"{READ_REASONS['read:line_too_long']} ({size} > {limits.max_line_bytes} characters); "
               f"payload cut to the limit.")
    return dead_letter(ctx, "read", [reason("read:line_too_long", message)],
                       text.encode("utf-8", "surrogateescape"), uri, line, truncated=True, raw_size=size)


def read_csv(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """CSV with a header row named like the envelope fields; an empty cell means absent.

    Each row is a unit of its own: a row longer than --max_line_bytes (a huge cell) is a dead letter
    ``read:line_too_long``, a row the CSV reader refuses is ``parse:invalid_csv``, and the rows after
    either are read. A row's line number is that of its first line (a quoted cell may span several)."""
    # the csv module's cell limit is process-wide (131,072 characters by default): raise it to the line
    # limit, so a long cell is the row's problem, measured below, not an error that ends the file
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_line_bytes + 1))
    with open_source(task.uri, task.compression) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        lines = _PhysicalLines(text)
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        lines.take(0)
        batch = RecordBatch(task.uri)
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    raw_text, size, line = lines.take(limits.max_line_bytes)
                    yield Count(task.uri, "read")
                    if size > limits.max_line_bytes:  # a cell past the reader's limit
                        yield _csv_too_long(ctx, task.uri, raw_text, size, line, limits)
                    else:
                        yield dead_letter(ctx, "parse", [reason(
                            "parse:invalid_csv", f"{PARSE_REASONS['parse:invalid_csv']} ({err}).")],
                            raw_text.encode("utf-8", "surrogateescape"), task.uri, line)
                    continue
                raw_text, size, line = lines.take(limits.max_line_bytes)
                if not any(cell.strip() for cell in row):
                    yield Count(task.uri, "blank_lines")
                    continue
                if size > limits.max_line_bytes:
                    yield Count(task.uri, "read")
                    yield _csv_too_long(ctx, task.uri, raw_text, size, line, limits)
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


_NUMBER_FIELDS = frozenset(f.name for f in ENVELOPE if NUMBER in f.wire_types)
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


class UnreadableValue:
    """A Parquet value with no JSON form (a nested timestamp beyond year 9999, say): its field's wire
    type is then unsupported, so the row is a dead letter ``<field>:type`` and the file reads on."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _epoch_micros(column: pa.Array) -> list:
    """A TIMESTAMP column (any unit; a naive one read as UTC) as integer epoch microseconds, exactly:
    nanoseconds floored, no overflow (a value beyond every bound is simply out of range later)."""
    unit = column.type.unit
    raw = pc.cast(column, pa.int64()).to_pylist()
    if unit == "ns":
        return [None if v is None else v // 1000 for v in raw]
    factor = _MICROS_PER_UNIT[unit]
    return raw if factor == 1 else [None if v is None else v * factor for v in raw]


def _text(value: bytes) -> str | bytes:
    """Binary as the text it holds; bytes that are not UTF-8 stay bytes (a wrong wire type)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _jsonable(value: object) -> object:
    """A nested Parquet value as a JSON value: decimals as numbers, dates and times as ISO-8601 text,
    binary as text, maps as [key, value] pairs."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        text = _text(bytes(value))
        return text if isinstance(text, str) else base64.b64encode(text).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _column_values(name: str, column: pa.Array) -> list:
    """One top-level Parquet column as JSON-like values, whatever its physical type: TIMESTAMP as
    epoch µs, DATE and TIME as text, DECIMAL as a number for the number fields (text elsewhere),
    binary as text, nested values as JSON. A value with no such form becomes an ``UnreadableValue``."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.dictionary_decode(), kind.value_type
    try:
        if pa.types.is_timestamp(kind):
            return _epoch_micros(column)
        if pa.types.is_date(kind) or pa.types.is_time(kind):
            return pc.cast(column, pa.string()).to_pylist()
        if pa.types.is_decimal(kind):
            if name in _NUMBER_FIELDS:
                return [_jsonable(v) for v in column.to_pylist()]
            return pc.cast(column, pa.string()).to_pylist()
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            return [None if v is None else _text(v) for v in column.to_pylist()]
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                return column.to_pylist()
            except UnicodeDecodeError:  # a string column holding bytes that are not UTF-8
                return [None if v is None else _text(v) for v in column.cast(pa.large_binary()).to_pylist()]
        if pa.types.is_nested(kind):
            if pa.types.is_map(kind) and name == "data":  # (key, value) pairs; JSON keys are strings
                return [None if v is None else {k if isinstance(k, str) else str(k): _jsonable(x) for k, x in v}
                        for v in column.to_pylist()]
            return [_jsonable(v) for v in column.to_pylist()]
        return column.to_pylist()
    except (ValueError, TypeError, OverflowError, ArithmeticError, pa.ArrowException):
        return [_value_or_unreadable(column, i) for i in range(len(column))]


def _value_or_unreadable(column: pa.Array, i: int) -> object:
    try:
        return _jsonable(column[i].as_py())
    except (ValueError, TypeError, OverflowError, ArithmeticError, pa.ArrowException) as err:
        return UnreadableValue(f"<unreadable {column.type} value: {type(err).__name__}: {err}>")


def _parquet_record(row: dict) -> dict:
    data = row.get("data")
    if isinstance(data, str):
        try:
            row["data"] = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    elif isinstance(data, dict):  # a STRUCT column has every key of the file: drop the unset ones
        row["data"] = {k: v for k, v in data.items() if v is not None}
    return {k: v for k, v in row.items() if v is not None or k == "clientId"}


def read_parquet(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """Parquet rows, one record each. Every column type maps to a JSON value (``_column_values``) or
    marks its row's field unreadable: a row with a value of the wrong kind is that row's dead letter,
    never the file's error."""
    if task.size == 0:  # an empty file, as for the other formats: nothing to read (not a broken footer)
        return
    with open_source(task.uri, "none") as f:
        parquet = pq.ParquetFile(f)
        row_no = 1
        for arrow_batch in parquet.iter_batches(batch_size=limits.batch_size):
            names = arrow_batch.schema.names
            columns = [_column_values(name, column) for name, column in zip(names, arrow_batch.columns)]
            batch = RecordBatch(task.uri)
            for values in zip(*columns) if columns else ():
                row = dict(zip(names, values))
                raw = compact_json(row)  # before _parquet_record rewrites the row in place
                batch.append(_parquet_record(row), raw, row_no, None)
                row_no += 1
            if len(batch):
                yield batch


def read_replay(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A replay file (``transforms.sources.REPLAY_FORMAT``): each line the base64 of one payload, read
    as the line of an export it was, line breaks inside it included."""
    with open_source(task.uri, task.compression) as f:
        content, error = _read_all(f)
    payloads = (base64.b64decode(line) for line in content.split(b"\n") if line.strip())
    yield from _line_batches(((p, len(p)) for p in payloads), task.uri, ctx, limits, 1)
    if error is not None:
        raise error


def read_task(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int = 1) -> Iterator:
    """Everything one task yields: LineBatch / RecordBatch, dead-letter dicts, Count, FileError."""
    readers = {
        "ndjson": lambda: read_ndjson(task, ctx, limits, first_line),
        "json": lambda: read_json_document(task, ctx, limits),
        "csv": lambda: read_csv(task, ctx, limits),
        "parquet": lambda: read_parquet(task, ctx, limits),
        REPLAY_FORMAT: lambda: read_replay(task, ctx, limits),
    }
    try:
        yield from readers[task.format]()
    except READ_ERRORS as err:
        yield FileError(task.uri, f"{type(err).__name__}: {err}")
