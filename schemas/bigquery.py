"""BigQuery table schemas in the API's JSON form, derived from ``schemas.envelope``.

Kept as plain dicts (``SchemaField.from_api_repr`` takes them) so this package needs no cloud client.
"""

from __future__ import annotations

from schemas.envelope import (
    CONFLICT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    IDS_COLUMNS,
    LANDING_COLUMNS,
    LANDING_MARKS_COLUMNS,
    OUTPUT_COLUMNS,
    RUNS_COLUMNS,
    OutputColumn,
)

PARTITION_COLUMN = "timestamp"
CLUSTER_COLUMNS = ("key", "name", "clientId")

_TYPES = {  # column kind -> BigQuery type
    "string": "STRING", "int64": "INTEGER", "bool": "BOOLEAN", "timestamp": "TIMESTAMP", "numeric": "NUMERIC",
    "record": "RECORD", "string_list": "STRING", "labels": "RECORD", "reasons": "RECORD",
}
_REPEATED = frozenset({"string_list", "labels", "reasons"})
"""Kinds that are lists: a REPEATED field. Any other kind is NULLABLE, or REQUIRED for a required column."""


def bigquery_field(col: OutputColumn) -> dict:
    mode = "REPEATED" if col.kind in _REPEATED else "REQUIRED" if col.required else "NULLABLE"
    field = {"name": col.name, "type": _TYPES[col.kind], "mode": mode, "description": col.description}
    if col.fields:
        field["fields"] = [bigquery_field(sub) for sub in col.fields]
    return field


def table_schema(columns: tuple[OutputColumn, ...] = OUTPUT_COLUMNS) -> list[dict]:
    return [bigquery_field(c) for c in columns]


EVENTS_SCHEMA = table_schema(OUTPUT_COLUMNS)
DEAD_LETTER_TABLE_SCHEMA = table_schema(DEAD_LETTER_COLUMNS)
CONFLICT_TABLE_SCHEMA = table_schema(CONFLICT_COLUMNS)
LANDING_SCHEMA = table_schema(LANDING_COLUMNS)
IDS_SCHEMA = table_schema(IDS_COLUMNS)
RUNS_SCHEMA = table_schema(RUNS_COLUMNS)
LANDING_MARKS_SCHEMA = table_schema(LANDING_MARKS_COLUMNS)
