"""A JSON document: one array of envelopes (or one envelope), and how to tell a file that is not JSON."""

from __future__ import annotations

import io
from collections.abc import Iterator

import orjson

from schemas.envelope import PARSE_REASONS
from transforms.core.payloads import exact_bytes, keep_whole
from transforms.core.records import (
    ImportContext,
    RecordBatch,
    compact_json,
    dead_letter,
    reason,
)
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, open_source
from transforms.sources.read_ndjson import line_batches, payload_spill, split_lines
from transforms.sources.read_types import Count, FileError, read_all
from transforms.stages.parse import parse_elements, split_json_array


def read_json_document(task: ReadTask, ctx: ImportContext, limits: ReadLimits) -> Iterator:
    """A ``.json`` file: one top-level array of envelopes, or one (pretty-printed) envelope; anything
    else is read as NDJSON, unless no line of it is JSON either: then the file is reported as not
    JSON (``FileError``), rather than as a dead letter per line.

    An array with a broken element (a NaN, a cut-off end) is read element by element: each element
    is a record of its own, and only the broken ones are dead letters."""
    with open_source(task.uri, task.compression) as f:
        content, error = read_all(f)
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
    yield from line_batches(split_lines(io.BytesIO(content), 0, None, limits.max_line_bytes,
                                          payload_spill(task.uri, ctx, limits)),
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
