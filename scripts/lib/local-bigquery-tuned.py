"""``local-bigquery`` tuned for many small imports on few cores: ``python local-bigquery-tuned.py N serve ...``.

Started by scripts/bigquery_emulator.sh when ``BQ_EMULATOR_THREADS`` is set (the tests set 1). Two changes,
each giving the same answers as the emulator's own code:

1. Its DuckDB runs on N threads. The emulator opens its connections with DuckDB's default of one thread per
   core and offers no setting for it; its queries are small, so with several emulators and test workers
   sharing two cores the threads' coordination costs more CPU than it saves (measured: 2.2 → 1.7
   CPU-seconds of emulator per 30-event import).
2. Its catalog lookups read DuckLake's own catalog tables of the one project they ask about, instead of
   DuckDB's ``duckdb_tables()``, ``duckdb_columns()`` and ``duckdb_schemas()``, which go through every
   table, column or schema of every project at each call (``duckdb_tables()`` works out each table's size:
   about 0.5 ms a table, 5.6 ms against 1.0 with 36 tables):
   - the listing of a dataset's tables and views (``engine.database.objects``, some 60 calls an import);
     a table's size there is DuckLake's ``ducklake_table_stats.record_count``, which is what
     ``duckdb_tables()`` reports for a DuckLake table (it does not drop after a DELETE, in both);
   - three queries the emulator sends through ``engine.database.fetch`` (``CATALOG_QUERIES``): whether a
     dataset exists, a table's NOT NULL columns, whether a table has a column.
   Each call runs in a transaction of its own, as the originals do, so both see the same committed
   snapshot. Where the answer is not a DuckLake table or schema (the emulator's own database, which holds
   query results; a view, whose columns DuckLake does not store) the emulator's own query answers.
   ``BQ_EMULATOR_CHECK_LISTING=1`` runs both at every call and stops the emulator (exit 70, the two
   answers in its log) on the first difference: the whole suite ran that way without one, and
   ``tests/test_emulator_setup.py`` keeps an import, DML, a view, a wildcard query, a rename and drops
   under that check.
"""

import os
import sys

import duckdb

threads = int(sys.argv.pop(1))
_connect = duckdb.connect


def connect(*args, config=None, **kwargs):
    return _connect(*args, config={"threads": threads, **(config or {})}, **kwargs)


duckdb.connect = connect

from local_bigquery.engine import database  # noqa: E402 (after the patch, which its import must see)

emulators_own_fetch = database.fetch
emulators_own_listing = database.objects
CHECK = os.environ.get("BQ_EMULATOR_CHECK_LISTING") == "1"


def answered(what: str, ours, theirs) -> list:
    """``ours()``, or ``theirs()`` (the emulator's own code) where ours raises CatalogException or answers
    None (not a DuckLake database, table or schema). Under ``BQ_EMULATOR_CHECK_LISTING=1`` theirs is asked
    too: the answer stands if theirs is the same as a set, or the same as ours asked again right after it
    (another request committed in between: the tests write from several threads at once); else the
    emulator stops (exit 70) with both answers in its log."""
    try:
        rows = ours()
    except duckdb.CatalogException:
        rows = None
    if rows is None:
        return theirs()
    if not CHECK:
        return rows
    expected = theirs()
    if sorted(rows) == sorted(expected) or sorted(rows := ours() or []) == sorted(expected):
        return rows
    print(f"local-bigquery-tuned: {what} differs from the emulator's own: {rows} against {expected}",
          file=sys.stderr, flush=True)
    os._exit(70)


def catalog(project_id: str) -> str:
    """The DuckLake catalog tables of a project (a CatalogException when it is not a DuckLake database)."""
    return database.quote(f"__ducklake_metadata_{project_id}")


def objects(project_id: str, dataset_id: str, table_id: str | None = None) -> list[tuple[str, str, int]]:
    """What ``database.objects`` answers: (name, 'TABLE' or 'VIEW', size) of the dataset's tables and views
    (or of ``table_id`` only), by name."""
    return answered(f"the listing of {project_id}.{dataset_id} (table {table_id})",
                    lambda: _objects(project_id, dataset_id, table_id),
                    lambda: emulators_own_listing(project_id, dataset_id, table_id))


def _objects(project_id: str, dataset_id: str, table_id: str | None) -> list[tuple[str, str, int]]:
    meta = catalog(project_id)
    return emulators_own_fetch(
        f"SELECT t.table_name, 'TABLE', coalesce(s.record_count, 0) FROM {meta}.ducklake_table t "
        f"JOIN {meta}.ducklake_schema d USING (schema_id) "
        f"LEFT JOIN {meta}.ducklake_table_stats s USING (table_id) "
        "WHERE t.end_snapshot IS NULL AND d.end_snapshot IS NULL AND d.schema_name = $1 "
        "AND t.table_name = coalesce($2, t.table_name) "
        f"UNION ALL SELECT v.view_name, 'VIEW', 0 FROM {meta}.ducklake_view v "
        f"JOIN {meta}.ducklake_schema d USING (schema_id) "
        "WHERE v.end_snapshot IS NULL AND d.end_snapshot IS NULL AND d.schema_name = $1 "
        "AND v.view_name = coalesce($2, v.view_name) ORDER BY 1",
        [dataset_id, table_id],
    )


def _columns(project_id: str, dataset_id: str, table_id: str, condition: str, params: list) -> list[tuple] | None:
    """Rows (column name) of the current top-level columns of a DuckLake table that meet ``condition``, or
    None when the name is not a table there (a view, whose columns DuckLake does not store, or nothing)."""
    meta = catalog(project_id)
    rows = emulators_own_fetch(
        f"SELECT c.column_name FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema d USING (schema_id) "
        f"LEFT JOIN {meta}.ducklake_column c ON c.table_id = t.table_id AND c.end_snapshot IS NULL "
        f"AND c.parent_column IS NULL AND {condition} "
        "WHERE t.end_snapshot IS NULL AND d.end_snapshot IS NULL AND d.schema_name = ? AND t.table_name = ? "
        "ORDER BY c.column_order", [*params, dataset_id, table_id])
    if not rows:
        return None
    return [row for row in rows if row[0] is not None]


def schema_exists(project_id: str, dataset_id: str) -> list[tuple] | None:
    meta = catalog(project_id)
    return emulators_own_fetch(f"SELECT 1 FROM {meta}.ducklake_schema WHERE end_snapshot IS NULL AND schema_name = ?",
                               [dataset_id])


def required_columns(project_id: str, dataset_id: str, table_id: str) -> list[tuple] | None:
    return _columns(project_id, dataset_id, table_id, "NOT c.nulls_allowed", [])


def has_column(project_id: str, dataset_id: str, table_id: str, column: str) -> list[tuple] | None:
    rows = _columns(project_id, dataset_id, table_id, "c.column_name = ?", [column])
    return None if rows is None else [(1,) for _ in rows]


CATALOG_QUERIES = {
    # the emulator's own queries (catalog/datasets.py, catalog/tables.py, sql/rules/partitions.py), each of
    # which reads DuckDB's duckdb_schemas() or duckdb_columns(): every schema or column of every project
    "SELECT 1 FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?": schema_exists,
    "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? "
    "AND NOT is_nullable": required_columns,
    "SELECT 1 FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? "
    "AND column_name = ?": has_column,
}


def fetch(sql: str, params: list | None = None) -> list[tuple]:
    """``database.fetch``, with the catalog queries of ``CATALOG_QUERIES`` answered from DuckLake's catalog
    tables of that one project (the emulator's own query where it is not a DuckLake table or schema)."""
    answer = CATALOG_QUERIES.get(sql)
    if answer is None:
        return emulators_own_fetch(sql, params)
    return answered(f"{sql} {params}", lambda: answer(*params), lambda: emulators_own_fetch(sql, params))


database.objects = objects
database.fetch = fetch

from local_bigquery.cli import main  # noqa: E402

sys.argv[0] = "local-bigquery"
sys.exit(main())
