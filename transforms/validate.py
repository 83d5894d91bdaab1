"""Validate stage: envelopes against the pandera model of the protocol, a whole batch at a time.

Validation is lazy, so a record that breaks several rules reports every one of them. Records that
break any rule become dead letters; pandera's failure cases are turned into plain dicts here so no
pandera object travels further.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import repeat

import numpy as np
import polars as pl

from schemas.envelope import ABSENT, ARRAY, BOOLEAN, ENVELOPE, NULL, NUMBER, OBJECT, STRING
from schemas.validation import WIRE_SUFFIX, Rule, envelope_schema, value_dtype
from transforms.records import ImportContext, RecordBatch, cyclic_gc_paused, dead_letter, reason

UNSUPPORTED = "unsupported"
# wire type of a Python value, as a code into _TAGS (anything else: UNSUPPORTED); None is JSON null
# until _split_nulls tells the absent fields from the nulls
_TAGS = (STRING, NUMBER, BOOLEAN, NULL, OBJECT, ARRAY, ABSENT, UNSUPPORTED)
_CODE = {str: 0, int: 1, float: 1, bool: 2, type(None): 3, dict: 4, list: 5}
_STRING_CODE, _NULL_CODE, _ABSENT_CODE, _UNSUPPORTED_CODE = 0, 3, 6, 7
_STRING_KINDS = {str, type(None)}
_NUMBER_KINDS = {int, float, type(None)}


def _as_float(value: object) -> float | None:
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    return value if type(value) is float else None


def _field_columns(records: list[dict], fields: list[tuple] | None) -> list:
    """Per envelope field, its value in every record (``None`` where null or absent)."""
    if fields is not None and len(fields) == len(records):
        return list(zip(*fields)) if fields else [() for _ in ENVELOPE]
    return [list(map(dict.get, records, repeat(f.name))) for f in ENVELOPE]


def _split_nulls(codes: np.ndarray, records: list[dict], name: str) -> np.ndarray:
    """Recode the None values of field ``name`` as ``absent`` where the record does not have it."""
    nulls = np.flatnonzero(codes == _NULL_CODE)
    if nulls.size:
        with_field = map(records.__getitem__, nulls.tolist())
        present = np.fromiter(map(dict.__contains__, with_field, repeat(name)), bool, nulls.size)
        codes[nulls[~present]] = _ABSENT_CODE
    return codes


def _type_codes(values) -> np.ndarray:
    return np.fromiter(map(_CODE.get, map(type, values), repeat(_UNSUPPORTED_CODE)), np.uint8, len(values))


def wire_frame(records: list[dict], fields: list[tuple] | None = None) -> pl.DataFrame:
    """The frame pandera validates: each field's wire type and, when it is right, its value.

    Built column by column from the values the parse stage extracted (``fields``; taken from the
    records when absent) with C-level passes: a column holding the expected Python type throughout
    (or None) converts wholesale, wire types are gathered from small integer codes, and only the
    records where a field is None are asked whether they have it. A value of an unexpected type
    sends its column through a per-value Python loop."""
    columns: dict[str, pl.Series] = {}
    n = len(records)
    tag_names = pl.Series(values=_TAGS, dtype=pl.Utf8)
    for f, values in zip(ENVELOPE, _field_columns(records, fields)):
        dtype = value_dtype(f)
        series = None
        if dtype is pl.Utf8:
            # never hand polars a value of another type: its fallback conversion of a deeply nested
            # array takes memory exponential in the depth (gigabytes at a depth of 250)
            if set(map(type, values)) <= _STRING_KINDS:
                series = pl.Series(f.name, values, dtype=pl.Utf8)
                codes = (series.is_null().to_numpy() * np.uint8(_NULL_CODE)).astype(np.uint8)
            else:  # typed one by one
                codes = _type_codes(values)
                series = pl.Series(f.name, [v if type(v) is str else None for v in values], dtype=pl.Utf8)
        elif dtype is pl.Float64:
            kinds = set(map(type, values))
            codes = _type_codes(values)
            if kinds <= _NUMBER_KINDS:
                series = pl.Series(f.name, values, dtype=pl.Float64, strict=False)
                # an int beyond float range converts to null: let _as_float make it inf
                if series.null_count() != values.count(None):
                    series = None
            if series is None:
                series = pl.Series(f.name, [_as_float(v) for v in values], dtype=pl.Float64)
        else:
            codes = _type_codes(values)
        if f.required or NULL not in f.accepted:
            # absent and null break different rules here; for an optional field that may be null,
            # no rule tells them apart, and both stay tagged null (asking every record costs)
            codes = _split_nulls(codes, records, f.name)
        wire_name = f.name + WIRE_SUFFIX
        first = int(codes[0]) if n else 0
        if n and not (codes != first).any():
            columns[wire_name] = pl.Series(wire_name, [_TAGS[first]], dtype=pl.Utf8).extend_constant(
                _TAGS[first], n - 1)
        else:
            columns[wire_name] = tag_names.gather(codes).alias(wire_name)
        if series is not None:
            columns[f.name] = series
    return pl.DataFrame(columns, height=n)


def failures_by_row(frame: pl.DataFrame) -> dict[int, list[Rule]]:
    """Run the pandera model; returns the rules each failing row (by position) breaks."""
    from pandera.errors import SchemaErrors  # on first use, as in schemas.validation

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
    frame = wire_frame(batch.records, batch.fields)
    batch.fields = None  # the frame has them now
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
    keep = np.ones(len(batch), dtype=bool)
    keep[list(failing)] = False
    valid = batch.subset(keep)
    valid.frame = frame.filter(keep)
    return valid, dead
