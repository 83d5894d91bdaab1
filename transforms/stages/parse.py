"""Parse stage: raw lines into JSON envelopes (or dead letters).

A line holds one envelope or a JSON array of envelopes (the collector accepts both). A record that
is not valid UTF-8, not valid JSON, or not an object becomes a dead letter with its own code.
"""

from __future__ import annotations

import re

import orjson

from schemas.envelope import ENVELOPE, PARSE_REASONS, READ_REASONS
from transforms.core.records import (
    ImportContext,
    Kept,
    LineBatch,
    RecordBatch,
    compact_json,
    cyclic_gc_paused,
    dead_letter,
    reason,
)

BOM = b"\xef\xbb\xbf"
FIELD_NAMES = tuple(f.name for f in ENVELOPE)
JSON_WHITESPACE = b" \t\r\n"
_ARRAY_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},]', re.DOTALL)
"""A string (to its closing quote, or to the end when it has none), or a bracket, brace or comma."""


def split_json_array(body: bytes) -> list[bytes] | None:
    """The raw text of each top-level element of a JSON array that does not parse as a whole, so that
    one broken element (a NaN, a cut-off tail) is one dead letter and the others are still read.

    Strings are skipped whole (a comma or bracket inside one does not split). An array cut off
    before its closing bracket ends with its incomplete element. Returns None when ``body`` is not
    one array (it does not start with `[`, or something follows its closing bracket: NDJSON lines of
    arrays, for instance). Empty elements (`[1,,2]`) are not records and are left out."""
    body = body.strip(JSON_WHITESPACE)
    if body.startswith(BOM):
        body = body[len(BOM):].lstrip(JSON_WHITESPACE)
    if not body.startswith(b"["):
        return None
    elements: list[bytes] = []
    depth, start, end = 0, 1, None
    for token in _ARRAY_TOKENS.finditer(body, 1):
        c = token.group()[:1]
        if c == b'"':
            continue
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            if depth == 0:
                end = token.start()
                break
            depth -= 1
        elif depth == 0:  # a comma between two elements
            elements.append(body[start:token.start()])
            start = token.end()
    if end is None:  # cut off before the closing bracket
        elements.append(body[start:])
    else:
        if body[end + 1:].strip(JSON_WHITESPACE):
            return None
        elements.append(body[start:end])
    return [e for e in (e.strip(JSON_WHITESPACE) for e in elements) if e]


def parse_elements(elements: list[bytes], ctx: ImportContext, uri: str, line: int | None,
                   max_bytes: int = 1 << 20) -> tuple[list[tuple[object, bytes, int]], list[dict]]:
    """Parse the elements ``split_json_array`` found: ((value, raw, index) of those that parse, dead
    letters of those that do not, each with its own index and its own text as payload)."""
    parsed, dead = [], []
    for index, raw in enumerate(elements):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            detail = f"{error.msg} (char {error.pos}); element {index} of the array."
            if index == len(elements) - 1 and "end of data" in error.msg:  # the array stops in it
                detail += " The array ends there, before its closing `]`: cut off (truncated) in this element."
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                code, detail = "read:invalid_utf8", f"Byte {bad.start}: {bad.reason}; element {index} of the array."
            else:
                code = json_error_code(error.msg)
            cut = len(raw) > max_bytes
            dead.append(dead_letter(ctx, "parse", [_invalid(code, detail)], raw[:max_bytes] if cut else raw,
                                    uri, line, index, truncated=cut, raw_size=len(raw)))
        else:
            parsed.append((value, compact_json(value), index))
    return parsed, dead


def json_error_code(message: str) -> str:
    """The reason code of a JSON parse error: a lone surrogate escape has its own (BigQuery refuses it
    too; ``transforms.core.bigquery_values``), anything else is invalid JSON."""
    return "parse:invalid_unicode" if "surrogate" in message else "parse:invalid_json"


def _invalid(code: str, detail: str = "") -> dict:
    table = PARSE_REASONS if code in PARSE_REASONS else READ_REASONS
    message = table[code] + (f" {detail}" if detail else "")
    return reason(code, message)


def parse_lines(batch: LineBatch, ctx: ImportContext) -> Kept:
    """Parse each line; returns the envelopes (one per array element) and the dead letters."""
    with cyclic_gc_paused():
        return _parse_lines(batch, ctx)


def _parse_lines(batch: LineBatch, ctx: ImportContext) -> Kept:
    out = RecordBatch(batch.source_uri, fields=[])
    dead: list[dict] = []
    uri = batch.source_uri
    loads = orjson.loads
    names = FIELD_NAMES
    # bound appends, not out.append: one method call less per record counts at a million records
    add_record, add_raw, add_line, add_index = (
        out.records.append, out.raws.append, out.line_numbers.append, out.indexes.append)
    add_fields = out.fields.extend
    for raw, line in zip(batch.lines, batch.line_numbers):
        try:
            value = loads(raw)
        except orjson.JSONDecodeError as first_error:
            # keep the message, not the exception: its traceback holds this frame and with it the
            # whole batch, in a reference cycle only the cyclic collector would ever free
            failure: str | None = f"{first_error.msg} (char {first_error.pos})."
            if raw.startswith(BOM):
                try:  # the BOM is skipped for parsing only: raw stays the exact line for dead letters
                    value = loads(raw[len(BOM):])
                    failure = None
                except orjson.JSONDecodeError as bom_error:
                    failure = f"{bom_error.msg} (char {bom_error.pos})."
            if failure is not None and raw.lstrip(BOM + JSON_WHITESPACE).startswith(b"["):
                elements = split_json_array(raw)
                if elements:  # one array with a broken element: the others still count
                    parsed, broken = parse_elements(elements, ctx, uri, line)
                    dead += broken
                    for element, element_raw, index in parsed:
                        _add_element(out, dead, ctx, element, element_raw, uri, line, index)
                    continue
            if failure is not None:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    code, detail = "read:invalid_utf8", f"Byte {bad.start}: {bad.reason}."
                else:
                    code, detail = json_error_code(failure), failure
                dead.append(dead_letter(ctx, "parse", [_invalid(code, detail)], raw, uri, line))
                continue
        if type(value) is dict:
            add_record(value)
            add_raw(raw)
            add_line(line)
            add_index(None)
            add_fields(map(value.get, names))
        elif type(value) is list:
            if not value:
                dead.append(dead_letter(ctx, "parse", [_invalid("parse:empty_array")], raw, uri, line))
            for index, element in enumerate(value):
                _add_element(out, dead, ctx, element, compact_json(element), uri, line, index)
        else:
            dead.append(dead_letter(
                ctx, "parse", [_invalid("parse:not_an_object", f"Got {_json_type(value)}.")], raw, uri, line,
            ))
    return Kept(out, dead)


def _add_element(out: RecordBatch, dead: list[dict], ctx: ImportContext, element: object, raw: bytes, uri: str,
                 line: int | None, index: int) -> None:
    if type(element) is dict:
        out.append(element, raw, line, index)
        out.fields.extend(map(element.get, FIELD_NAMES))
    else:
        dead.append(dead_letter(ctx, "parse", [_invalid("parse:not_an_object", f"Got {_json_type(element)}.")],
                                raw, uri, line, index))


def check_objects(batch: RecordBatch, ctx: ImportContext) -> Kept:
    """For sources parsed by their reader (JSON arrays, CSV, Parquet): keep the objects."""
    keep, dead = [], []
    for i, record in enumerate(batch.records):
        if type(record) is dict:
            keep.append(i)
        else:
            dead.append(dead_letter(
                ctx, "parse", [_invalid("parse:not_an_object", f"Got {_json_type(record)}.")],
                batch.raws[i], batch.source_uri, batch.line_numbers[i], batch.indexes[i],
            ))
    return Kept(batch if len(keep) == len(batch) else batch.subset(keep), dead)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return "an object"
