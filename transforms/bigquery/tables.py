"""BigQuery operations of the write stage: tables from the schema source, staged loads, queries, scripts.

What is written and when is ``transforms.bigquery.merge`` (the write transaction) and ``transforms.bigquery.jobs``
(one job per launch and step, whoever runs the step).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

import transforms.core.gcs  # noqa: F401  (staged files on a GCS stand-in: STORAGE_EMULATOR_HOST)
from schemas.bigquery import CLUSTER_COLUMNS, PARTITION_COLUMN
from transforms.bigquery.client import (
    JOB_TIMEOUT_SECONDS,
    BigQuerySession,
    TargetError,
    query,  # noqa: F401  (its home before: callers import it from here too)
    query_config,
)
from transforms.core.settings import TableRef

log = logging.getLogger(__name__)
STAGING_EXPIRY = timedelta(days=1)


def _bigquery():
    from google.cloud import bigquery

    return bigquery


def schema_fields(schema_json: list[dict]):
    bigquery = _bigquery()
    return [bigquery.SchemaField.from_api_repr(f) for f in schema_json]


def ensure_dataset(bq: BigQuerySession, ref: TableRef, location: str | None = None) -> None:
    """The dataset of ``ref``, created if missing. Looked up first: one call in the usual case (a create
    of an existing dataset is two, its refusal and a lookup), and a user whose roles are granted on the
    dataset alone, without ``bigquery.datasets.create`` on the project, is never asked to create it."""
    from google.api_core.exceptions import NotFound

    bigquery = _bigquery()
    dataset = bigquery.Dataset(f"{ref.project}.{ref.dataset}")
    try:
        bq.client.get_dataset(dataset.reference, retry=bq.retry(), timeout=bq.timeout)
        return
    except NotFound:
        pass
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
                 partition_expiry: timedelta | None = None, cluster: tuple[str, ...] | None = None,
                 granularity: str = "DAY") -> str:
    """Create the table from the schema source, or check (and extend) an existing one. ``cluster``:
    clustering columns (default: the events table's when partitioned on its event time).

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
                type_=getattr(bigquery.TimePartitioningType, granularity), field=partition_field,
                expiration_ms=int(partition_expiry.total_seconds() * 1000) if partition_expiry else None)
            if partition_field == PARTITION_COLUMN and cluster is None:
                cluster = CLUSTER_COLUMNS
        if cluster:
            table.clustering_fields = list(cluster)
        bq.client.create_table(table, exists_ok=True, retry=bq.retry(), timeout=bq.timeout)
        return "created"
    if partitioned and partition_field == "landed_at" and table.time_partitioning is not None \
            and partition_expiry is None and table.time_partitioning.expiration_ms:
        # an earlier version let landing partitions expire: rows must stay until they are merged
        table.time_partitioning.expiration_ms = None
        bq.client.update_table(table, ["time_partitioning"], retry=bq.retry(), timeout=bq.timeout)
    add, problems = schema_differences(list(table.schema), wanted)
    if problems:
        raise TargetError(f"table {ref} is not compatible with the importer's schema: " + "; ".join(problems)
                          + ". Import into another table, or migrate this one.")
    if add:
        table.schema = list(table.schema) + add
        bq.client.update_table(table, ["schema"], retry=bq.retry(), timeout=bq.timeout)
        return "extended: " + ", ".join(f.name for f in add)
    return "exists"


MAX_SOURCE_URIS = 10_000
"""A load job takes at most this many source URIs (https://cloud.google.com/bigquery/quotas#load_jobs);
beyond it the job names the parts by one wildcard URI."""


def source_uris(paths: list[str]) -> list[str]:
    """The URIs a load job names for ``paths``: the paths themselves, or, past ``MAX_SOURCE_URIS``, one
    wildcard of their common folder and extension (the folder holds only this step's parts)."""
    if len(paths) <= MAX_SOURCE_URIS:
        return list(paths)
    folders = {p.rsplit("/", 1)[0] for p in paths}
    extensions = {os.path.splitext(p)[1] for p in paths}
    if len(folders) != 1 or len(extensions) != 1:
        raise TargetError(f"{len(paths)} staged parts in several folders: a load job takes at most "
                          f"{MAX_SOURCE_URIS} URIs, and one wildcard needs one folder")
    return [f"{folders.pop()}/*{extensions.pop()}"]


def _local_copy(paths: list[str], suffix: str) -> str:
    """Concatenate part files (local or gs://) into one local file (one upload = one load job)."""
    fd, combined = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        if suffix == ".parquet":
            writer = None
            for path in paths:
                with FileSystems.open(path, compression_type="uncompressed") as f:
                    part = pq.ParquetFile(pa.BufferReader(f.read()) if "://" in path else path)
                if writer is None:
                    writer = pq.ParquetWriter(out, part.schema_arrow, compression="zstd")
                for i in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(i))
            if writer is not None:
                writer.close()
        else:
            for path in paths:
                with FileSystems.open(path, compression_type="uncompressed") as f:
                    shutil.copyfileobj(f, out)
    return combined


def create_expiring(bq: BigQuerySession, ref: TableRef, schema_json: list[dict]) -> None:
    """A staging table that goes away by itself within ``STAGING_EXPIRY``, whatever fails later."""
    from google.api_core.exceptions import NotFound

    bigquery = _bigquery()
    table = bigquery.Table(ref.api_id, schema=schema_fields(schema_json))
    table.expires = datetime.now(UTC) + STAGING_EXPIRY
    for _ in range(STAGING_CREATE_ATTEMPTS):
        try:
            bq.client.create_table(table, exists_ok=True, retry=bq.retry(), timeout=bq.timeout)
            return
        except Exception as err:
            # two executions of one step creating it at once: BigQuery answers the second 409 (exists_ok),
            # the local emulator may refuse it ("Failed to commit DuckLake transaction"); either way it exists,
            # unless the other execution has committed and dropped it since: then it is made again (the
            # steps after it attach to the other's jobs and read nothing from it)
            refused = err
        try:
            bq.client.get_table(ref.api_id, retry=bq.retry(), timeout=bq.timeout)
            return
        except NotFound:
            continue
    raise refused


STAGING_CREATE_ATTEMPTS = 3
"""Tries at making a staging table that is refused and not there (``create_expiring``)."""


def load_files(bq: BigQuerySession, ref: TableRef, paths: list[str], schema_json: list[dict], source_format: str,
               *, step: tuple[str, str, str], append: bool = False) -> int:
    """One load job of all ``paths`` (local or gs://) into the staging table ``ref`` (replacing its
    rows; ``append``: adding to them); returns the rows loaded. ``step`` = (run id, launch, step name)
    names the job (``bq_jobs.run_step``), so a retried step attaches to the load already submitted.

    Local files, and gs:// files when BigQuery is the local emulator (which reads gs:// URIs from its
    own data folder, not from a GCS stand-in), are uploaded; real BigQuery reads gs:// itself."""
    from transforms.bigquery import jobs as bq_jobs
    bigquery = _bigquery()
    config = bigquery.LoadJobConfig(
        schema=schema_fields(schema_json),
        source_format=source_format,
        write_disposition="WRITE_APPEND" if append else "WRITE_TRUNCATE",
        create_disposition="CREATE_IF_NEEDED",
    )
    if source_format == bigquery.SourceFormat.PARQUET:
        config.parquet_options = bigquery.ParquetOptions()
        config.parquet_options.enable_list_inference = True
    remote = [p.startswith("gs://") for p in paths]
    if any(remote) and not all(remote):
        raise TargetError("staged files are partly on gs:// and partly local; use one --temp_location")

    if bq.emulated and bq.local_files and paths and not any(remote):
        job = _load_in_place(bq, ref, paths, config, step)
        if job is not None:
            return int(job.output_rows or 0)
        step = (*step[:2], f"{step[2]}_upload")  # its own job id: a retry walks the same two jobs
    upload = not (all(remote) and not bq.emulated)
    if not upload:
        def submit(name: str):
            return bq.client.load_table_from_uri(source_uris(paths), ref.api_id, job_config=config, job_id=name,
                                                 retry=bq.retry(), timeout=bq.timeout)
    else:
        def submit(name: str):
            combined = _local_copy(paths, ".parquet" if source_format == bigquery.SourceFormat.PARQUET else ".ndjson")
            try:
                with open(combined, "rb") as f:
                    return bq.client.load_table_from_file(f, ref.api_id, job_config=config, job_id=name,
                                                          num_retries=2, timeout=JOB_TIMEOUT_SECONDS)
            finally:
                os.unlink(combined)
    job = bq_jobs.run_step(bq, *step, submit, look_first=upload)
    return int(job.output_rows or 0)


def _load_in_place(bq: BigQuerySession, ref: TableRef, paths: list[str], config, step: tuple[str, str, str]):
    """``--emulator_load=local_files``: one load job that names the local ``paths`` by ``file://`` URIs,
    which an emulator on this machine reads in place (no combined copy, no upload: at 1M events the load
    took 0.8 s instead of 2.1 s). Returns the finished job, or None when the emulator could not see the
    files (it runs elsewhere, e.g. in a container: it answers "No files found" with the path), after
    which the session uploads (``bq.local_files`` off) and the caller's step goes on by upload."""
    from google.api_core.exceptions import BadRequest

    from transforms.bigquery import jobs as bq_jobs

    uris = source_uris([f"file://{Path(p).resolve()}" for p in paths])  # as is: the emulator unquotes nothing

    def submit(name: str):
        return bq.client.load_table_from_uri(uris, ref.api_id, job_config=config, job_id=name,
                                             retry=bq.retry(), timeout=bq.timeout)
    try:
        return bq_jobs.run_step(bq, *step, submit)
    except BadRequest as err:
        # the message names the path it looked for: a part's, or past MAX_SOURCE_URIS their folder's wildcard
        unseen = "no files found" in str(err).lower() and any(str(Path(p).resolve().parent) in str(err) for p in paths)
        if not unseen:
            raise
        log.warning("the BigQuery emulator cannot read this machine's files (%s): loading by upload instead; "
                    "--emulator_load=upload skips the attempt", str(err).splitlines()[0][:200])
        bq.local_files = False
        return None


def run_script(bq: BigQuerySession, sql: str, params: dict, *, step: tuple[str, str, str]) -> list[dict]:
    """Run a script (``bq_jobs.run_step``: one job per launch and step) and return its last result."""
    from transforms.bigquery import jobs as bq_jobs
    config = query_config(params)

    def submit(name: str):
        return bq.client.query(sql, job_config=config, job_id=name, retry=bq.retry(), job_retry=None,
                               timeout=bq.timeout)

    job = bq_jobs.run_step(bq, *step, submit)
    return [dict(row.items()) for row in job.result(retry=bq.retry(), job_retry=None)]


def drop_table(bq: BigQuerySession, ref: TableRef) -> None:
    bq.client.delete_table(ref.api_id, not_found_ok=True, retry=bq.retry(), timeout=bq.timeout)
