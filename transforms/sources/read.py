"""Read stage: one read task into batches of lines (NDJSON) or records (JSON array, CSV, Parquet).

Everything the reader meets is accounted for: each record is counted as read, blank lines are
counted apart, an over-long line is dead-lettered here, and a file that breaks mid-way (a truncated
gzip, a corrupt Parquet footer) is reported as a file error after the records read before the break.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable, Iterator
from itertools import groupby

import orjson

from schemas.envelope import PARSE_REASONS, READ_REASONS
from transforms.core import progress
from transforms.core.payloads import MAX_STORED_BYTES, PayloadSpill, exact_bytes, keep_whole, payload_path, store_whole
from transforms.core.records import (
    ORIGIN_COLUMNS,
    ImportContext,
    LineBatch,
    RecordBatch,
    compact_json,
    dead_letter,
    reason,
    stamp_origin,
)
from transforms.core.settings import ReadLimits
from transforms.sources.files import REPLAY_FORMAT, ReadTask, open_source
from transforms.sources.read_csv import read_csv
from transforms.sources.read_parquet import read_parquet
from transforms.sources.read_types import READ_ERRORS, Count, FileError
from transforms.stages.parse import parse_elements, parse_lines, split_json_array

log = logging.getLogger(__name__)
BLOCK = 8 << 20
PROGRESS_SECONDS = 15.0
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


def _split_lines(f, start: int, end: int | None, max_line: int,
                 spill: Callable[[int], PayloadSpill] | None = None) -> Iterator[tuple[bytes, int, str | None]]:
    """(line, full length, where it is stored whole) for each line starting before ``end``; a line longer
    than ``max_line`` is yielded cut to ``max_line`` bytes (its full length tells) and, with ``spill``
    (which opens a payload file for the line starting at a byte offset), written whole to a payload file
    as it is read, never held in memory whole. A trailing CR is dropped, and not counted: a CRLF line
    of exactly ``max_line`` bytes is as good as an LF one."""
    offset = start
    pending: list[bytes] = []
    pending_len = 0
    last = b""  # the last byte of the line so far (is it a CR?)
    writer: PayloadSpill | None = None  # the long line being read, written whole
    # read1 hands over what one underlying read decompressed, so a stream that breaks loses nothing
    # it had already decoded (a plain read(BLOCK) would raise and drop the whole block)
    read = getattr(f, "read1", f.read)
    while True:
        try:
            block = read(BLOCK)
        except READ_ERRORS:
            if pending_len:  # the cut-off last line is a record too: it will fail to parse
                yield b"".join(pending), pending_len - (last == b"\r"), writer.close() if writer else None
            raise
        if not block:
            break
        parts = block.split(b"\n")
        for part in parts[:-1]:
            length = pending_len + len(part)
            size = length - ((part[-1:] if part else last) == b"\r")  # without the CR of a CRLF
            last = b""
            stored = None
            if writer is not None:
                writer.write(part)
                stored, writer = writer.close(), None
            elif spill is not None and size > max_line:  # pending holds all of it: at most max_line + 1 bytes
                stored = _spill_whole(spill(offset), [*pending, part])
            if pending:
                line = b"".join(pending) + part[: max(0, max_line + 1 - pending_len)]
                pending, pending_len = [], 0
            else:
                line = part
            yield (line[:-1] if line.endswith(b"\r") else line), size, stored
            offset += length + 1
            if end is not None and offset >= end:
                return
        tail = parts[-1]
        last = tail[-1:] or last
        if writer is not None:
            writer.write(tail)
        elif spill is not None and pending_len + len(tail) > max_line + 1:  # pending holds all the line so far
            writer = spill(offset)
            for chunk in (*pending, tail):
                writer.write(chunk)
        if pending_len <= max_line:
            pending.append(tail[: max_line + 1 - pending_len])
        pending_len += len(tail)
    if pending_len:
        line = b"".join(pending)
        size = pending_len - (last == b"\r")
        stored = writer.close() if writer else None
        if stored is None and spill is not None and size > max_line:  # pending holds all of it
            stored = _spill_whole(spill(offset), pending)
        yield (line[:-1] if line.endswith(b"\r") else line), size, stored


def _spill_whole(writer: PayloadSpill, chunks: list[bytes]) -> str:
    for chunk in chunks:
        writer.write(chunk)
    return writer.close()


def _spill(uri: str, ctx: ImportContext, limits: ReadLimits) -> Callable[[int], PayloadSpill] | None:
    """Opens the payload file of the over-long line of ``uri`` starting at a byte offset (None: no
    payloads folder)."""
    if not limits.payload_dir:
        return None
    return lambda offset: PayloadSpill(payload_path(limits.payload_dir, ctx.run_id, [uri, "offset", offset]))


def _cut_note(stored: str | None, length: int = 0) -> str:
    if stored:
        return "payload cut to the limit here, kept whole in raw_payload_uri"
    if length > MAX_STORED_BYTES:
        return (f"payload cut to the limit (not kept whole: over {MAX_STORED_BYTES:,} bytes, larger than any "
                f"BigQuery row)")
    return "payload cut to the limit"


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
        yield from _line_batches(_split_lines(f, start, task.end, limits.max_line_bytes,
                                              _spill(task.uri, ctx, limits)),
                                 task.uri, ctx, limits, line_no)


def _line_batches(lines, uri: str, ctx: ImportContext, limits: ReadLimits, line_no: int) -> Iterator:
    batch = LineBatch(uri, [], [])
    blank = 0
    last_log = time.monotonic()
    try:
        for line, length, stored in lines:
            if length > limits.max_line_bytes:
                yield Count(uri, "read")
                dead = dead_letter(
                    ctx, "read",
                    [reason("read:line_too_long", f"{READ_REASONS['read:line_too_long']} "
                            f"({length} > {limits.max_line_bytes} bytes); {_cut_note(stored, length)}.")],
                    line[: limits.max_line_bytes], uri, line_no, truncated=True, raw_size=length,
                )
                if stored:
                    dead["raw_payload_uri"] = stored
                yield dead
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
    yield from _line_batches(_split_lines(io.BytesIO(content), 0, None, limits.max_line_bytes,
                                          _spill(task.uri, ctx, limits)),
                             task.uri, ctx, limits, 1)
    if error is not None:
        raise error


NOT_JSON = "not JSON"
_MAGIC = (  # (first bytes, what the file is, what to do); UTF-32 before UTF-16, whose mark it starts with
    (b"\xff\xfe\x00\x00", "UTF-32 text", "convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"),
    (b"\x00\x00\xfe\xff", "UTF-32 text", "convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"),
    (b"\xff\xfe", "UTF-16 text", "convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16 text", "convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)"),
    (b"\x1f\x8b", "gzip-compressed", "name it with .gz at the end"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "name it with .zst at the end"),
    (b"PAR1", "a Parquet file", "name it .parquet or give --input_format parquet"),
)


def wrong_kind(task: ReadTask) -> str | None:
    """A ``FileError`` message for a JSON file that is something else by its first bytes (UTF-16 or
    UTF-32 text, a compressed file without its extension, Parquet): read as UTF-8 lines it would be a
    dead letter per line, none of them of use."""
    with open_source(task.uri, "none") as f:
        head = f.read(10)
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return f"{NOT_JSON}: the file is bzip2-compressed: name it with .bz2 at the end"
    for magic, kind, todo in _MAGIC:
        if head.startswith(magic):
            return f"{NOT_JSON}: the file is {kind} (its first bytes are {magic.hex(' ')}): {todo}"
    return None
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
    # broken elements are dead letters with their whole text, cut here to --max_line_bytes (and
    # stored whole beside the dead-letter table when there is a payloads folder)
    parsed, dead = parse_elements(elements, ctx, uri, None, max(map(len, elements), default=0))
    for item in dead:
        yield Count(uri, "read")
        yield keep_whole(item, exact_bytes(item), limits.payload_dir, ctx.run_id, limits.max_line_bytes)
    batch = RecordBatch(uri)
    for value, raw, index in parsed:
        batch.append(value, raw, None, index)
        if len(batch) >= limits.batch_size:
            yield batch
            batch = RecordBatch(uri)
    if len(batch):
        yield batch


def read_replay(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A replay file (``transforms.sources.files.REPLAY_FORMAT``, written by ``pipeline.replay``): one dead
    letter per line, as a JSON object with its payload in base64 (``payload_base64``: line breaks
    inside a payload stay inside one record) and its lineage: ``source_uri``, ``source_line``,
    ``source_index`` and ``ORIGIN_COLUMNS``. Each payload is read as the line of an export it was, and
    its record (row or dead letter again) keeps that lineage: the batches are the original file's, with
    its line numbers. A line that is bare base64 (files of earlier versions) is a payload of this file."""
    with open_source(task.uri, task.compression) as f:
        content, error = _read_all(f)
    entries = (_replay_entry(line, task.uri, n) for n, line in enumerate(content.split(b"\n"), 1) if line.strip())
    for (uri, origin), group in groupby(entries, key=lambda e: (e[0], e[4])):
        yield from _replayed(list(group), uri, dict(origin) or None, ctx, limits)
    if error is not None:
        raise error


def _replay_entry(line: bytes, uri: str, number: int) -> tuple:
    """(source uri, line, index, payload, origin items) of one line of a replay file."""
    if not line.lstrip().startswith(b"{"):
        return uri, number, None, base64.b64decode(line), ()
    dead = orjson.loads(line)
    origin = tuple((k, dead.get(k)) for k in ORIGIN_COLUMNS if dead.get(k) is not None)
    return (dead.get("source_uri") or uri, dead.get("source_line"), dead.get("source_index"),
            base64.b64decode(dead["payload_base64"]), origin)


def _replayed(entries: list[tuple], uri: str, origin: dict | None, ctx: ImportContext,
              limits: ReadLimits) -> Iterator:
    """The records of one original source's replayed payloads: parsed as the lines they were, each
    keeping its line and its index in a JSON array."""
    batch = RecordBatch(uri, origin=origin)
    for _, line, index, payload, _ in entries:
        if len(payload) > limits.max_line_bytes:
            stored = None
            if limits.payload_dir and len(payload) <= MAX_STORED_BYTES:  # whole here: stored again
                stored = store_whole(limits.payload_dir, ctx.run_id, payload)
            dead = [dead_letter(
                ctx, "read", [reason("read:line_too_long", f"{READ_REASONS['read:line_too_long']} "
                                     f"({len(payload)} > {limits.max_line_bytes} bytes); {_cut_note(stored)}.")],
                payload[: limits.max_line_bytes], uri, line, index, truncated=True, raw_size=len(payload))]
            if stored:
                dead[0]["raw_payload_uri"] = stored
            parsed = RecordBatch(uri)
        else:
            parsed, dead = parse_lines(LineBatch(uri, [payload], [line]), ctx)
        for d in stamp_origin(dead, origin):
            if d["source_index"] is None:
                d["source_index"] = index
            yield Count(uri, "read")
            yield d
        for record, raw, at in zip(parsed.records, parsed.raws, parsed.indexes, strict=True):
            batch.append(record, raw, line, index if at is None else at)
            if len(batch) >= limits.batch_size:
                yield batch
                batch = RecordBatch(uri, origin=origin)
    if len(batch):
        yield batch


def read_task(task: ReadTask, ctx: ImportContext, limits: ReadLimits, first_line: int = 1) -> Iterator:
    """Everything one task yields: LineBatch / RecordBatch, dead-letter dicts, Count, FileError."""
    readers = {
        "ndjson": lambda: read_ndjson(task, ctx, limits, first_line),
        "json": lambda: read_json_document(task, ctx, limits),
        "csv": lambda: read_csv(task, ctx, limits),
        "parquet": lambda: read_parquet(task, ctx, limits),
        REPLAY_FORMAT: lambda: read_replay(task, ctx, limits),
    }
    ticker = progress.ReadTicker(task.uri, task.split_index, task.start,
                                 task.size if task.end is None else min(task.end, task.size))
    try:
        problem = wrong_kind(task) if task.format in ("ndjson", "json") and task.compression == "none" else None
        if problem:  # a file problem, said once (by the task of the file's start), not a dead letter per line
            if task.start == 0:
                yield FileError(task.uri, problem)
            ticker.done()
            return
        for item in readers[task.format]():
            if isinstance(item, (LineBatch, RecordBatch)):
                ticker.tick(len(item.lines) if isinstance(item, LineBatch) else len(item))
            yield item
    except READ_ERRORS as err:
        yield FileError(task.uri, f"{type(err).__name__}: {err}")
    ticker.done()
