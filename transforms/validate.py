"""Validate stage: envelopes against the pandera model of the protocol, a whole batch at a time.

Validation is lazy, so a record that breaks several rules reports every one of them. Records that
break any rule become dead letters; pandera's failure cases are turned into plain dicts here so no
pandera object travels further.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import repeat

import polars as pl
from pandera.errors import SchemaErrors

from schemas.envelope import ABSENT, ARRAY, BOOLEAN, ENVELOPE, NULL, NUMBER, OBJECT, STRING
from schemas.validation import WIRE_SUFFIX, Rule, envelope_schema, value_dtype
from transforms.records import ImportContext, RecordBatch, cyclic_gc_paused, dead_letter, reason

_MISSING = object()
_MISSING_TYPE = type(_MISSING)
_WIRE_TYPE = {str: STRING, int: NUMBER, float: NUMBER, bool: BOOLEAN, type(None): NULL,
              dict: OBJECT, list: ARRAY, _MISSING_TYPE: ABSENT}
UNSUPPORTED = "unsupported"
_STRING_KINDS = {str, type(None), _MISSING_TYPE}
_NUMBER_KINDS = {int, float, type(None), _MISSING_TYPE}


def _as_float(value: object) -> float | None:
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    return value if type(value) is float else None


def wire_frame(records: list[dict]) -> pl.DataFrame:
    """The frame pandera validates: each field's wire type and, when it is right, its value.

    Built column by column with C-level passes (``map`` over ``dict.get`` and ``type``): a column
    holding one Python type throughout (every ``key`` a str…) is converted wholesale; only a value of
    an unexpected type sends its column through a per-value Python loop."""
    columns: dict[str, pl.Series] = {}
    n = len(records)
    for f in ENVELOPE:
        values = list(map(dict.get, records, repeat(f.name), repeat(_MISSING)))
        kinds = set(map(type, values))
        wire_name = f.name + WIRE_SUFFIX
        if len(kinds) == 1:
            tag = _WIRE_TYPE.get(next(iter(kinds)), UNSUPPORTED)
            tags = pl.Series(wire_name, [tag], dtype=pl.Utf8).extend_constant(tag, n - 1)
        else:
            tag_list = list(map(_WIRE_TYPE.get, map(type, values)))
            if not kinds <= _WIRE_TYPE.keys():
                tag_list = [t or UNSUPPORTED for t in tag_list]
            tags = pl.Series(wire_name, tag_list, dtype=pl.Utf8)
        columns[wire_name] = tags
        dtype = value_dtype(f)
        if dtype is None:
            continue
        wanted = _STRING_KINDS if dtype is pl.Utf8 else _NUMBER_KINDS
        if kinds <= wanted:
            plain = values if _MISSING_TYPE not in kinds else list(map(dict.get, records, repeat(f.name)))
            series = pl.Series(f.name, plain, dtype=dtype, strict=False)
            # an int beyond float range converts to null: let _as_float make it inf
            if dtype is pl.Float64 and series.null_count() != plain.count(None):
                series = pl.Series(f.name, [_as_float(v) for v in values], dtype=pl.Float64)
        elif dtype is pl.Utf8:
            series = pl.Series(f.name, [v if type(v) is str else None for v in values], dtype=pl.Utf8)
        else:
            series = pl.Series(f.name, [_as_float(v) for v in values], dtype=pl.Float64)
        columns[f.name] = series
    return pl.DataFrame(columns, height=n)


def failures_by_row(frame: pl.DataFrame) -> dict[int, list[Rule]]:
    """Run the pandera model; returns the rules each failing row (by position) breaks."""
    schema, rules = envelope_schema()
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return {}
    failing: dict[int, list[Rule]] = defaultdict(list)
    for column, number, index, value in zip(
        cases["column"].to_list(), cases["check_number"].to_list(),
        cases["index"].to_list(), cases["failure_case"].to_list(),
    ):
        rule = rules.get((column, number))
        if rule is None or index is None:
            # A schema-level failure (wrong dtype, missing column) is a bug in wire_frame, not bad input.
            raise RuntimeError(f"unexpected validation failure on column {column!r}: {value}")
        failing[int(index)].append(rule)
    return failing


def validate_batch(batch: RecordBatch, ctx: ImportContext) -> tuple[RecordBatch, list[dict]]:
    """Keep the envelopes that pass every rule; dead-letter the others with all their reasons."""
    with cyclic_gc_paused():
        return _validate_batch(batch, ctx)


def _validate_batch(batch: RecordBatch, ctx: ImportContext) -> tuple[RecordBatch, list[dict]]:
    if not batch.records:
        return batch, []
    frame = wire_frame(batch.records)
    failing = failures_by_row(frame)
    if not failing:
        batch.frame = frame
        return batch, []
    dead = []
    for i, rules in sorted(failing.items()):
        record = batch.records[i]
        reasons = [reason(r.code, r.message, r.field, record.get(r.field)) for r in rules]
        dead.append(dead_letter(ctx, "validate", reasons, batch.raws[i], batch.source_uri,
                                batch.line_numbers[i], batch.indexes[i]))
    keep = [i for i in range(len(batch)) if i not in failing]
    valid = batch.subset(keep)
    valid.frame = frame[keep]
    return valid, dead
