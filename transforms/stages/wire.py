"""The wire frame: a batch's envelope fields as typed columns, and each value's JSON type.

The validate stage hands this frame to pandera; the normalize stage reads the values from it. Built
column by column with C-level passes over the values the parse stage extracted.
"""

from __future__ import annotations

import math
from itertools import compress, repeat

import numpy as np
import polars as pl

from schemas.envelope import ABSENT, ARRAY, BOOLEAN, ENVELOPE, NULL, NUMBER, OBJECT, STRING
from schemas.validation import WIRE_SUFFIX, value_dtype

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
