"""Arrow schemas of loaded rows and dead letters, derived from ``schemas.envelope``."""

from __future__ import annotations

import pyarrow as pa

from schemas.envelope import DEAD_LETTER_COLUMNS, OUTPUT_COLUMNS, OutputColumn

NUMERIC = pa.decimal128(38, 9)
"""BigQuery NUMERIC: 38 digits, 9 after the point. Values are rounded to 2 decimals first."""

_SCALARS = {
    "string": pa.string(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "numeric": NUMERIC,
    "string_list": pa.list_(pa.string()),
}


def arrow_type(col: OutputColumn) -> pa.DataType:
    if col.kind in _SCALARS:
        return _SCALARS[col.kind]
    if col.kind == "record":
        return pa.struct([arrow_field(sub) for sub in col.fields])
    # labels / reasons: a repeated record of the column's sub-fields
    return pa.list_(pa.struct([arrow_field(sub) for sub in col.fields]))


def arrow_field(col: OutputColumn) -> pa.Field:
    return pa.field(col.name, arrow_type(col), nullable=not col.required,
                    metadata={"description": col.description})


def schema_of(columns: tuple[OutputColumn, ...]) -> pa.Schema:
    return pa.schema([arrow_field(c) for c in columns])


ROW_SCHEMA = schema_of(OUTPUT_COLUMNS)
DEAD_LETTER_SCHEMA = schema_of(DEAD_LETTER_COLUMNS)
