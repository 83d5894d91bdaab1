"""BigQuery operations of the write stage: tables from the schema source, staged loads, the MERGE.

Idempotence comes from the MERGE: staged rows are inserted only when their ``eventId`` is not in
the target yet (within the batch's event-time range, so BigQuery reads only those partitions).
Load jobs and the MERGE are atomic, so a failure leaves the target as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.bigquery import CLUSTER_COLUMNS, PARTITION_COLUMN
from transforms.bq_client import JOB_TIMEOUT_SECONDS, BigQuerySession, TableRef, TargetError

log = logging.getLogger(__name__)
STAGING_EXPIRY = timedelta(days=1)


def _bigquery():
    from google.cloud import bigquery

    return bigquery


def schema_fields(schema_json: list[dict]):
    bigquery = _bigquery()
    return [bigquery.SchemaField.from_api_repr(f) for f in schema_json]


def ensure_dataset(bq: BigQuerySession, ref: TableRef, location: str | None = None) -> None:
    bigquery = _bigquery()
    dataset = bigquery.Dataset(f"{ref.project}.{ref.dataset}")
    if location:
        dataset.location = location
    bq.client.create_dataset(dataset, exists_ok=True, retry=bq.retry(), timeout=bq.timeout)


def _describe(field) -> str:
    return f"{field.field_type} {field.mode or 'NULLABLE'}"


def schema_differences(existing: list, wanted: list, path: str = "") -> tuple[list, list[str]]:
    """(fields to add, incompatibilities) between an existing table schema and the wanted one."""
    have = {f.name.lower(): f for f in existing}
    add, problems = [], []
    for w in wanted:
        e = have.pop(w.name.lower(), None)
        name = path + w.name
        if e is None:
            if (w.mode or "NULLABLE") == "REQUIRED":
                problems.append(f"column {name} is missing (it is REQUIRED, so it cannot be added)")
            elif path:
                problems.append(f"column {name} is missing inside a RECORD")
            else:
                add.append(w)
            continue
        same_type = e.field_type.replace("INT64", "INTEGER").replace("BOOL", "BOOLEAN").replace(
            "STRUCT", "RECORD") == w.field_type.replace("INT64", "INTEGER").replace("BOOL", "BOOLEAN").replace(
            "STRUCT", "RECORD")
        e_mode, w_mode = e.mode or "NULLABLE", w.mode or "NULLABLE"
        if not same_type or (e_mode == "REPEATED") != (w_mode == "REPEATED"):
            problems.append(f"column {name} is {_describe(e)}, expected {_describe(w)}")
        elif e_mode == "REQUIRED" and w_mode != "REQUIRED":
            problems.append(f"column {name} is REQUIRED in the table but may be null in the rows")
        elif w.field_type == "RECORD":
            sub_add, sub_problems = schema_differences(list(e.fields), list(w.fields), name + ".")
            problems += sub_problems
            problems += [f"column {name}.{f.name} is missing inside a RECORD" for f in sub_add]
    for extra in have.values():
        if (extra.mode or "NULLABLE") == "REQUIRED":
            problems.append(f"the table has a REQUIRED column {path}{extra.name} that the importer does not fill")
    return add, problems


def ensure_table(bq: BigQuerySession, ref: TableRef, schema_json: list[dict], description: str,
                 partitioned: bool = False, partition_field: str = PARTITION_COLUMN,
                 partition_expiry: timedelta | None = None) -> str:
    """Create the table from the schema source, or check (and extend) an existing one.

    Returns what was done: ``created``, ``extended: …`` or ``exists``. An incompatible table raises
    ``TargetError`` naming each difference, before anything is written.
    """
    bigquery = _bigquery()
    from google.api_core.exceptions import NotFound

    wanted = schema_fields(schema_json)
    try:
        table = bq.client.get_table(ref.api_id, retry=bq.retry(), timeout=bq.timeout)
    except NotFound:
        table = bigquery.Table(ref.api_id, schema=wanted)
        table.description = description
        if partitioned:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=partition_field,
                expiration_ms=int(partition_expiry.total_seconds() * 1000) if partition_expiry else None)
            if partition_field == PARTITION_COLUMN:
                table.clustering_fields = list(CLUSTER_COLUMNS)
        bq.client.create_table(table, exists_ok=True, retry=bq.retry(), timeout=bq.timeout)
        return "created"
    add, problems = schema_differences(list(table.schema), wanted)
    if problems:
        raise TargetError(f"table {ref} is not compatible with the importer's schema: " + "; ".join(problems)
                          + ". Import into another table, or migrate this one.")
    if add:
        table.schema = list(table.schema) + add
        bq.client.update_table(table, ["schema"], retry=bq.retry(), timeout=bq.timeout)
        return "extended: " + ", ".join(f.name for f in add)
    return "exists"


def _local_copy(paths: list[str], suffix: str) -> str:
    """Concatenate local part files into one file (one upload = one load job)."""
    fd, combined = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        if suffix == ".parquet":
            writer = None
            for path in paths:
                part = pq.ParquetFile(path)
                if writer is None:
                    writer = pq.ParquetWriter(out, part.schema_arrow, compression="zstd")
                for i in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(i))
            if writer is not None:
                writer.close()
        else:
            for path in paths:
                with FileSystems.open(path) as f:
                    shutil.copyfileobj(f, out)
    return combined


def load_files(bq: BigQuerySession, ref: TableRef, paths: list[str], schema_json: list[dict], source_format: str,
               *, replace: bool, expires: bool = False) -> int:
    """One load job of all ``paths`` (local or gs://) into ``ref``; returns the rows loaded."""
    bigquery = _bigquery()
    config = bigquery.LoadJobConfig(
        schema=schema_fields(schema_json),
        source_format=source_format,
        write_disposition="WRITE_TRUNCATE" if replace else "WRITE_APPEND",
        create_disposition="CREATE_IF_NEEDED",
    )
    if source_format == bigquery.SourceFormat.PARQUET:
        config.parquet_options = bigquery.ParquetOptions()
        config.parquet_options.enable_list_inference = True
    if expires:
        # the table exists, with its expiry, before anything is loaded: whatever fails later, it goes away
        table = bigquery.Table(ref.api_id, schema=schema_fields(schema_json))
        table.expires = datetime.now(UTC) + STAGING_EXPIRY
        bq.client.create_table(table, exists_ok=True, retry=bq.retry(), timeout=bq.timeout)
    if all(p.startswith("gs://") for p in paths):
        job = bq.client.load_table_from_uri(paths, ref.api_id, job_config=config, retry=bq.retry())
    elif any(p.startswith("gs://") for p in paths):
        raise TargetError("staged files are partly on gs:// and partly local; use one --temp_location")
    else:
        combined = _local_copy(paths, ".parquet" if source_format == bigquery.SourceFormat.PARQUET else ".ndjson")
        try:
            with open(combined, "rb") as f:
                job = bq.client.load_table_from_file(f, ref.api_id, job_config=config, num_retries=2,
                                                     timeout=JOB_TIMEOUT_SECONDS)
        finally:
            os.unlink(combined)
    job.result(timeout=JOB_TIMEOUT_SECONDS, retry=bq.retry())
    return int(job.output_rows or 0)


def query(bq: BigQuerySession, sql: str, params: dict | None = None) -> list[dict]:
    """Run SQL with named parameters (values never go into the SQL text)."""
    bigquery = _bigquery()
    kinds = {int: "INT64", str: "STRING", datetime: "TIMESTAMP", float: "FLOAT64", bool: "BOOL"}
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(name, kinds[type(value)], value) for name, value in (params or {}).items()
    ])
    job = bq.client.query(sql, job_config=config, retry=bq.retry(), job_retry=None, timeout=bq.timeout)
    # job_retry=None: any other value wraps jobs.insert in a private 10-minute retry (client 3.47);
    # timeout: without one, a jobs.insert that gets no answer waits forever, whatever the retry deadline
    rows = job.result(timeout=JOB_TIMEOUT_SECONDS, retry=bq.retry(), job_retry=None)
    return [dict(row.items()) for row in rows]


def time_range(bq: BigQuerySession, staging: TableRef) -> tuple[datetime, datetime] | None:
    rows = query(bq, f"SELECT MIN({PARTITION_COLUMN}) AS lo, MAX({PARTITION_COLUMN}) AS hi FROM {staging.sql}")
    if not rows or rows[0]["lo"] is None:
        return None
    return rows[0]["lo"], rows[0]["hi"]


def merge_new_rows(bq: BigQuerySession, target: TableRef, staging: TableRef, columns: list[str],
                   lo: datetime, hi: datetime) -> int:
    """Insert the staged rows whose eventId is not in the target; returns how many were inserted."""
    cols = ", ".join(f"`{c}`" for c in columns)
    values = ", ".join(f"S.`{c}`" for c in columns)
    sql = (
        f"MERGE {target.sql} T USING {staging.sql} S "
        f"ON T.eventId = S.eventId AND T.{PARTITION_COLUMN} BETWEEN @lo AND @hi "
        f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
    )
    bigquery = _bigquery()
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("lo", "TIMESTAMP", lo), bigquery.ScalarQueryParameter("hi", "TIMESTAMP", hi)])
    job = bq.client.query(sql, job_config=config, retry=bq.retry(), job_retry=None, timeout=bq.timeout)
    job.result(timeout=JOB_TIMEOUT_SECONDS, retry=bq.retry(), job_retry=None)
    return int(job.num_dml_affected_rows or 0)


def rows_by_source(bq: BigQuerySession, table: TableRef, run_id: str | None = None,
                   lo: datetime | None = None, hi: datetime | None = None) -> dict[str, int]:
    """Rows per ``source_uri`` (of one run, within an event-time range, when given)."""
    where, params = [], {}
    if run_id is not None:
        where.append("import_run_id = @run_id")
        params["run_id"] = run_id
    if lo is not None:
        where.append(f"{PARTITION_COLUMN} BETWEEN @lo AND @hi")
        params.update(lo=lo, hi=hi)
    sql = f"SELECT source_uri, COUNT(*) AS n FROM {table.sql}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY source_uri"
    return {r["source_uri"]: int(r["n"]) for r in query(bq, sql, params)}


def drop_table(bq: BigQuerySession, ref: TableRef) -> None:
    bq.client.delete_table(ref.api_id, not_found_ok=True, retry=bq.retry(), timeout=bq.timeout)
