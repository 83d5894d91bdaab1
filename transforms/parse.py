"""Parse stage: raw lines into JSON envelopes (or dead letters).

A line holds one envelope or a JSON array of envelopes (the collector accepts both). A record that
is not valid UTF-8, not valid JSON, or not an object becomes a dead letter with its own code.
"""

from __future__ import annotations

import orjson

from schemas.envelope import ENVELOPE, PARSE_REASONS, READ_REASONS
from transforms.records import (
    ImportContext,
    LineBatch,
    RecordBatch,
    compact_json,
    cyclic_gc_paused,
    dead_letter,
    reason,
)

BOM = b"\xef\xbb\xbf"
FIELD_NAMES = tuple(f.name for f in ENVELOPE)


def _invalid(code: str, detail: str = "") -> dict:
    table = PARSE_REASONS if code in PARSE_REASONS else READ_REASONS
    message = table[code] + (f" {detail}" if detail else "")
    return reason(code, message)


def parse_lines(batch: LineBatch, ctx: ImportContext) -> tuple[RecordBatch, list[dict]]:
    """Parse each line; returns the envelopes (one per array element) and the dead letters."""
    with cyclic_gc_paused():
        return _parse_lines(batch, ctx)


def _parse_lines(batch: LineBatch, ctx: ImportContext) -> tuple[RecordBatch, list[dict]]:
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
            if failure is not None:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    code, detail = "read:invalid_utf8", f"Byte {bad.start}: {bad.reason}."
                else:
                    code, detail = "parse:invalid_json", failure
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
                element_raw = compact_json(element)
                if type(element) is dict:
                    out.append(element, element_raw, line, index)
                    add_fields(map(element.get, names))
                else:
                    dead.append(dead_letter(
                        ctx, "parse", [_invalid("parse:not_an_object", f"Got {_json_type(element)}.")],
                        element_raw, uri, line, index,
                    ))
        else:
            dead.append(dead_letter(
                ctx, "parse", [_invalid("parse:not_an_object", f"Got {_json_type(value)}.")], raw, uri, line,
            ))
    return out, dead


def check_objects(batch: RecordBatch, ctx: ImportContext) -> tuple[RecordBatch, list[dict]]:
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
    return (batch if len(keep) == len(batch) else batch.subset(keep)), dead


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
