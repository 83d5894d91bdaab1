"""Validate stage: envelopes against the pandera model of the protocol, a whole batch at a time.

Validation is lazy, so a record that breaks several rules reports every one of them. Records that
break any rule become dead letters; pandera's failure cases are turned into plain dicts here so no
pandera object travels further.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import compress, repeat

import numpy as np
import polars as pl

from schemas.envelope import ABSENT, ARRAY, BOOLEAN, ENVELOPE, NULL, NUMBER, OBJECT, STRING
from schemas.validation import WIRE_SUFFIX, Rule, envelope_schema, value_dtype
from transforms.core.bigquery_values import MAX_LOAD_ROW_BYTES, ROW_TOO_LARGE, oversized
from transforms.core.records import ImportContext, RecordBatch, cyclic_gc_paused, dead_letter, reason

UNSUPPORTED = "unsupported"
# wire type of a Python value, as a code into _TAGS (anything else: UNSUPPORTED); None is JSON null
# until _split_nulls tells the absent fields from the nulls
_TAGS = (STRING, NUMBER, BOOLEAN, NULL, OBJECT, ARRAY, ABSENT, UNSUPPORTED)
_CODE = {str: 0, int: 1, float: 1, bool: 2, type(None): 3, dict: 4, list: 5}
_STRING_CODE, _NUMBER_CODE, _NULL_CODE, _ABSENT_CODE, _UNSUPPORTED_CODE = 0, 1, 3, 6, 7


def _as_float(value: object) -> float | None:
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf  # copysign(inf, value) would convert it again
    return value if type(value) is float else None


def _field_columns(records: list[dict], fields: list | None) -> tuple[list, np.ndarray]:
    """Per envelope field, its value in every record (``None`` where null or absent), and the wire
    type codes of those values (one row per record, one column per field).

    From the parse stage's flat ``fields`` the columns are strided slices and the codes come from a
    single pass over every value; otherwise each field is gathered from the records."""
    width, n = len(ENVELOPE), len(records)
    if fields is not None and len(fields) == width * n:
        columns = [fields[k::width] for k in range(width)]
        codes = _type_codes(fields).reshape(n, width)
    else:
        columns = [list(map(dict.get, records, repeat(f.name))) for f in ENVELOPE]
        codes = np.stack([_type_codes(values) for values in columns], axis=1) if n else \
            np.zeros((0, width), np.uint8)
    return columns, codes


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


def wire_frame(records: list[dict], fields: list | None = None) -> pl.DataFrame:
    """The frame pandera validates: each field's wire type and, when it is right, its value.

    Built column by column from the values the parse stage extracted (``fields``; taken from the
    records when absent) with C-level passes: wire types are small integer codes of every value's
    Python type (one pass), values of the expected type convert wholesale (``_typed_series``), and
    only the records where a field is None are asked whether they have it."""
    columns: dict[str, pl.Series] = {}
    n = len(records)
    tag_names = pl.Series(values=_TAGS, dtype=pl.Utf8)
    values_by_field, all_codes = _field_columns(records, fields)
    for k, (f, values) in enumerate(zip(ENVELOPE, values_by_field)):
        dtype = value_dtype(f)
        codes = np.ascontiguousarray(all_codes[:, k])
        series = None
        if dtype is pl.Utf8:
            series = _typed_series(f.name, values, codes, _STRING_CODE, pl.Utf8)
        elif dtype is pl.Float64:
            series = _typed_series(f.name, values, codes, _NUMBER_CODE, pl.Float64)
            # an int beyond float range converts to null: let _as_float make it inf
            if series.null_count() != int(np.count_nonzero(codes != _NUMBER_CODE)):
                series = pl.Series(f.name, [_as_float(v) if c == _NUMBER_CODE else None
                                            for v, c in zip(values, codes.tolist())], dtype=pl.Float64)
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


def _typed_series(name: str, values: list, codes: np.ndarray, code: int, dtype) -> pl.Series:
    """The values whose wire type is ``code`` as a series of ``dtype``, null elsewhere.

    Polars is only ever handed values of the right type: its conversion of a deeply nested array
    takes time and memory exponential in the depth (gigabytes at a depth of 250). When other types
    occur, the right ones are picked (``compress``), converted, and spread back to their rows."""
    right = codes == code
    if not np.any(~right & (codes != _NULL_CODE)):  # the usual case: right type or null throughout
        return pl.Series(name, values, dtype=dtype, strict=False)
    compact = pl.Series(name, list(compress(values, right.tolist())), dtype=dtype, strict=False)
    positions = np.cumsum(right, dtype=np.int64) - 1
    positions[~right] = len(compact)  # the null appended below
    return compact.extend_constant(None, 1).gather(positions)


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


def validate_batch(batch: RecordBatch, ctx: ImportContext,
                   max_row_bytes: int = MAX_LOAD_ROW_BYTES) -> tuple[RecordBatch, list[dict]]:
    """Keep the envelopes that pass every rule; dead-letter the others with all their reasons. A record
    too large for a BigQuery row of ``max_row_bytes`` is one too (``transforms.core.bigquery_values``)."""
    with cyclic_gc_paused():
        return _validate_batch(batch, ctx, max_row_bytes)


def _validate_batch(batch: RecordBatch, ctx: ImportContext,
                    max_row_bytes: int = MAX_LOAD_ROW_BYTES) -> tuple[RecordBatch, list[dict]]:
    if not batch.records:
        return batch, []
    frame = wire_frame(batch.records, batch.fields)
    batch.fields = None  # the frame has them now
    failing = failures_by_row(frame)
    for i in oversized(batch.raws, max_row_bytes):
        failing.setdefault(i, []).append(ROW_TOO_LARGE)
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
