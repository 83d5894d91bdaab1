"""Read stage, Parquet: each row one record, every column type mapped to a JSON value.

A value with no JSON form marks its row's field unreadable, so the row becomes a ``<field>:type``
dead letter and the file reads on.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.envelope import ENVELOPE, NUMBER
from transforms.core.records import ImportContext, RecordBatch, compact_json
from transforms.core.settings import ReadLimits
from transforms.sources.files import ReadTask, open_source
from transforms.sources.read_types import FileError, duplicated_fields

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


_NON_FINITE = "\u0000non-finite\u0000"


def _row_payload(row: dict) -> bytes:
    """The row as compact JSON; a NaN or ±Infinity float (Parquet has them, JSON does not: orjson would
    write null, and a replay would then see a missing value) written as the token ``NaN``,
    ``Infinity`` or ``-Infinity``, so the payload shows what the file held."""
    odd = {k: v for k, v in row.items() if type(v) is float and not math.isfinite(v)}
    if not odd:
        return compact_json(row)
    raw = compact_json({**row, **{k: _NON_FINITE + repr(v) for k, v in odd.items()}})
    for text, token in (("nan", b"NaN"), ("inf", b"Infinity"), ("-inf", b"-Infinity")):
        raw = raw.replace(orjson.dumps(_NON_FINITE + text), token)
    return raw


def _parquet_record(row: dict) -> dict:
    for name in _NUMBER_FIELDS:  # NaN would read as a missing value later: it is a non-finite number
        value = row.get(name)
        if type(value) is float and math.isnan(value):
            row[name] = math.inf
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
        twice = duplicated_fields(parquet.schema_arrow.names)
        if twice:  # which column is the value? the file's problem, not a guess per row
            yield FileError(task.uri, f"the Parquet file has more than one column named {twice}: keep one of each")
            return
        row_no = 1
        for arrow_batch in parquet.iter_batches(batch_size=limits.batch_size):
            names = arrow_batch.schema.names
            columns = [_column_values(name, column) for name, column in zip(names, arrow_batch.columns)]
            batch = RecordBatch(task.uri)
            for values in zip(*columns) if columns else ():
                row = dict(zip(names, values))
                raw = _row_payload(row)  # before _parquet_record rewrites the row in place
                batch.append(_parquet_record(row), raw, row_no, None)
                row_no += 1
            if len(batch):
                yield batch
