"""``local-bigquery`` tuned for many small imports on few cores: ``python local-bigquery-tuned.py N serve ...``.

Started by scripts/bigquery_emulator.sh when ``BQ_EMULATOR_THREADS`` is set (the tests set 1). Two changes,
each giving the same answers as the emulator's own code:

1. Its DuckDB runs on N threads. The emulator opens its connections with DuckDB's default of one thread per
   core and offers no setting for it; its queries are small, so with several emulators and test workers
   sharing two cores the threads' coordination costs more CPU than it saves (measured: 2.2 → 1.7
   CPU-seconds of emulator per 30-event import).
2. Its listing of a dataset's tables and views (``engine.database.objects``, some 60 calls an import: every
   table lookup, every table a query names) reads DuckLake's own catalog tables for that one project instead
   of DuckDB's ``duckdb_tables()``, which works out the size of every table of every project at each call
   (about 0.5 ms a table: 5.6 ms against 1.0 with 36 tables). A table's size there is DuckLake's
   ``ducklake_table_stats.record_count``, which is what ``duckdb_tables()`` reports for a DuckLake table
   (it does not drop after a DELETE, in both). Each call runs in a transaction of its own, as the
   original does, so both see the same committed snapshot. A project that is not a DuckLake database
   (the emulator's own, which holds query results) is listed by the original.
   ``BQ_EMULATOR_CHECK_LISTING=1`` runs both at every call and stops the emulator (exit 70, the two
   answers in its log) on the first difference: ``tests/test_emulator_setup.py`` runs imports, DML,
   views, renames and drops that way.
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

emulators_own_listing = database.objects
CHECK = os.environ.get("BQ_EMULATOR_CHECK_LISTING") == "1"


def objects(project_id: str, dataset_id: str, table_id: str | None = None) -> list[tuple[str, str, int]]:
    """What ``database.objects`` answers: (name, 'TABLE' or 'VIEW', size) of the dataset's tables and views
    (or of ``table_id`` only), by name."""
    catalog = database.quote(f"__ducklake_metadata_{project_id}")
    try:
        rows = database.fetch(
            f"SELECT t.table_name, 'TABLE', coalesce(s.record_count, 0) FROM {catalog}.ducklake_table t "
            f"JOIN {catalog}.ducklake_schema d USING (schema_id) "
            f"LEFT JOIN {catalog}.ducklake_table_stats s USING (table_id) "
            "WHERE t.end_snapshot IS NULL AND d.end_snapshot IS NULL AND d.schema_name = $1 "
            "AND t.table_name = coalesce($2, t.table_name) "
            f"UNION ALL SELECT v.view_name, 'VIEW', 0 FROM {catalog}.ducklake_view v "
            f"JOIN {catalog}.ducklake_schema d USING (schema_id) "
            "WHERE v.end_snapshot IS NULL AND d.end_snapshot IS NULL AND d.schema_name = $1 "
            "AND v.view_name = coalesce($2, v.view_name) ORDER BY 1",
            [dataset_id, table_id],
        )
    except duckdb.CatalogException:  # not a DuckLake database
        return emulators_own_listing(project_id, dataset_id, table_id)
    if CHECK and rows != (expected := emulators_own_listing(project_id, dataset_id, table_id)):
        print(f"local-bigquery-tuned: the listing of {project_id}.{dataset_id} (table {table_id}) differs from "
              f"the emulator's own: {rows} against {expected}", file=sys.stderr, flush=True)
        os._exit(70)
    return rows


database.objects = objects

from local_bigquery.cli import main  # noqa: E402

sys.argv[0] = "local-bigquery"
sys.exit(main())
