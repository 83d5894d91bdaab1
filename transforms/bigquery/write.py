"""Write stage (BigQuery sink): staged files → load jobs into staging tables → one write transaction.

The rows, dead letters and conflicts are first written as files to a staging folder (the file
writer's ``write_files``; ``pipeline.sinks`` composes the two), then ``load_and_merge`` loads them and
writes them in one transaction. It returns what only a table can tell: the rows that were already in
the target, as counts that move them from ``loaded`` to ``already_present`` in the report.

Every BigQuery job of the step is named by (run id, launch, step) (``transforms.bigquery.jobs``): a retried
or duplicated execution of ``LoadAndMergeFn`` (Dataflow's retries, a zombie worker) attaches to the
jobs the first one submitted, and the write itself is one transaction (``transforms.bigquery.merge``) that
serializes concurrent imports of one table. Staging tables and staged files are per launch.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.bigquery import CONFLICT_TABLE_SCHEMA, DEAD_LETTER_TABLE_SCHEMA, EVENTS_SCHEMA
from transforms.bigquery import tables as bq_tables
from transforms.bigquery.client import connect
from transforms.bigquery.merge import (
    WriteTables,
    end_claim,
    ids_table,
    insert_new_rows_script,
    outcome_counts,
    runs_table,
)
from transforms.core import progress
from transforms.core.outputs import WrittenFiles
from transforms.core.settings import BigQueryTarget, TableRef

log = logging.getLogger(__name__)
EVENT_COLUMNS = [f["name"] for f in EVENTS_SCHEMA]


def staging_tables(target: BigQueryTarget, run_id: str, launch: str) -> dict[str, TableRef]:
    """The launch's own staging tables (rows, dead letters, conflicts): two launches never share one."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in f"{run_id}_{launch}")
    base = f"{target.events.table}__staging_{safe}"[:1000]
    return {kind: target.events.sibling(f"{base}{suffix}")
            for kind, suffix in (("rows", ""), ("dead_letters", "_dead_letters"), ("conflicts", "_conflicts"))}


def _drop_staging(bq, staging: TableRef) -> None:
    """A staging table left behind is harmless (it expires in a day): a failed drop must neither fail a
    run whose write committed nor hide the error of a run whose write failed."""
    from google.api_core.exceptions import GoogleAPIError, RetryError
    from requests.exceptions import RequestException

    try:
        bq_tables.drop_table(bq, staging)
    except (GoogleAPIError, RetryError, RequestException) as err:
        log.warning("could not drop the staging table %s (it expires on its own within a day): %s", staging, err)


def _target_errors() -> tuple:
    """What BigQuery (or reaching it) raises; anything else is a bug and fails the job untouched."""
    from google.api_core.exceptions import GoogleAPIError, RetryError
    from requests.exceptions import RequestException

    from transforms.bigquery.client import TargetError

    return GoogleAPIError, RetryError, RequestException, TargetError


def _refusals() -> tuple:
    """BigQuery refused the write itself (4xx: a bad request, a missing permission, a job that failed, a
    claim taken): every execution of the step gets the same answer, so cleaning up cannot hurt another.
    Unreachable BigQuery and 5xx are left for a retry of the step, which needs the staged files."""
    from google.api_core.exceptions import ClientError

    from transforms.bigquery.client import TargetError

    return ClientError, TargetError


def _non_empty(paths: list[str]) -> list[str]:
    if not paths:
        return []
    return [m.path for r in FileSystems.match(sorted(paths)) for m in r.metadata_list if m.size_in_bytes > 0]


class LoadAndMergeFn(beam.DoFn):
    """Runs once, after every staged file is written: loads, writes in one transaction, cleans up."""

    def __init__(self, target: BigQueryTarget, run_id: str, launch: str, imported_at: datetime,
                 staging_dir: str) -> None:
        self.target, self.run_id, self.launch = target, run_id, launch
        self.imported_at, self.staging_dir = imported_at, staging_dir
        self._load_ms = Metrics.distribution("importer", "bigquery_load_msecs")
        self._merge_ms = Metrics.distribution("importer", "bigquery_merge_msecs")

    def setup(self) -> None:
        self.bq = connect(self.target)

    def teardown(self) -> None:
        self.bq.close()

    def _step(self, name: str) -> tuple[str, str, str]:
        return self.run_id, self.launch, name

    def process(self, _, row_files, dead_files, conflict_files):
        try:
            counts = list(self._write(row_files, dead_files, conflict_files))
        except _refusals() as err:
            self._give_up(err)
            raise
        yield from counts

    def _give_up(self, err: BaseException) -> None:
        """A write that BigQuery refused: nothing of this launch is committed (or, if the transaction
        committed and only a later answer was refused, a retry of the step attaches to it and needs no
        file). Staged files, staging tables and the claim are cleaned up here, inside the job, so that a
        failed job leaves nothing behind; then the error goes on (the job fails, or a retry attaches)."""
        log.warning("the write to %s failed (%s): removing this launch's staged files and tables",
                    self.target.events, str(err).splitlines()[0][:300])
        from transforms.core.workfiles import remove_tree

        for ref in staging_tables(self.target, self.run_id, self.launch).values():
            _drop_staging(self.bq, ref)
        try:
            remove_tree(self.staging_dir)
        except Exception as cleanup:  # the failure to report is the write's
            log.warning("could not remove the staged files under %s: %s", self.staging_dir, cleanup)
        try:
            end_claim(self.bq, runs_table(self.target.events), self.run_id, self.launch, "failed")
        except _target_errors() as cleanup:
            log.warning("could not mark run %s as failed (its claim lapses on its own): %s", self.run_id, cleanup)

    def _write(self, row_files, dead_files, conflict_files):
        staging = staging_tables(self.target, self.run_id, self.launch)
        started = time.perf_counter()
        progress.phase("load")
        made = {}  # the staging tables of this write: rows always; dead letters and conflicts if there are some
        for kind, files, schema, fmt in (
                ("rows", sorted(row_files), EVENTS_SCHEMA, "PARQUET"),
                ("dead_letters", _non_empty(dead_files), DEAD_LETTER_TABLE_SCHEMA, "NEWLINE_DELIMITED_JSON"),
                ("conflicts", _non_empty(conflict_files), CONFLICT_TABLE_SCHEMA, "NEWLINE_DELIMITED_JSON")):
            if kind != "rows" and not files:
                continue
            made[kind] = staging[kind]
            bq_tables.create_expiring(self.bq, staging[kind], schema)
            if files:
                bq_tables.load_files(self.bq, staging[kind], files, schema, fmt, step=self._step(f"load_{kind}"))
        self._load_ms.update(int((time.perf_counter() - started) * 1000))
        progress.phase("load", "ended")
        events = self.target.events
        tables = WriteTables(events, ids_table(events), runs_table(events), self.target.dead_letters,
                             self.target.conflicts)
        sql = insert_new_rows_script(tables, staging["rows"], EVENT_COLUMNS,
                                     run_logs=(made.get("dead_letters"), made.get("conflicts")), final_status="merged")
        started = time.perf_counter()
        progress.phase("merge")
        result = outcome_counts(bq_tables.run_script(
            self.bq, sql, {"run": self.run_id, "launch": self.launch, "detected_at": self.imported_at},
            step=self._step("write")))
        self._merge_ms.update(int((time.perf_counter() - started) * 1000))
        progress.phase("merge", "ended")
        # committed: nothing staged is needed any more, by this execution or by a retry of it
        for ref in made.values():
            _drop_staging(self.bq, ref)
        from transforms.core.workfiles import remove_tree

        remove_tree(self.staging_dir)
        staged = sum(c["staged"] for c in result.values())
        inserted = sum(c["inserted"] for c in result.values())
        log.info("wrote to %s: %d new row(s) of %d staged", events, inserted, staged)
        for uri, c in result.items():
            already = c["staged"] - c["inserted"]
            if already:
                yield (uri, "loaded"), -already
                yield (uri, "already_present"), already
            if c["moved"]:
                yield (uri, "already_present_other_time"), c["moved"]


def load_and_merge(files: WrittenFiles, target: BigQueryTarget, run_id: str, launch: str, imported_at: datetime,
                   staging_dir: str) -> beam.PCollection:
    """Apply the load and write of the staged ``files`` (in the calling transform): ONE ``LoadAndMergeFn``
    call, once every file is written. Returns counts ``((source_uri, metric), n)`` for the report."""
    as_list = beam.pvalue.AsList
    return (
        files.rows.pipeline
        | "AfterStaging" >> beam.Create([None])
        | "LoadAndMerge" >> beam.ParDo(LoadAndMergeFn(target, run_id, launch, imported_at, staging_dir),
                                       as_list(files.rows), as_list(files.dead_letters), as_list(files.conflicts))
    )
